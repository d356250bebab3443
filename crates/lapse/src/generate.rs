//! Shell completion scripts and the man page, generated from the clap definitions at run time so
//! that they always describe the flags of the binary that prints them. `deploy/package.sh` runs
//! these to put both into the Debian package.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _};
use clap_complete::Shell;

use crate::cli::Cli;

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Print the completion script for `shell` to standard output.
pub fn completions(shell: Shell) -> anyhow::Result<ExitCode> {
    let mut out = io::stdout().lock();
    write_completions(shell, &mut out);
    out.flush().context("writing the completion script")?;
    Ok(ExitCode::SUCCESS)
}

/// Print the man page, section 1, to standard output.
pub fn man() -> anyhow::Result<ExitCode> {
    let mut out = io::stdout().lock();
    write_man(&mut out).context("writing the man page")?;
    out.flush().context("writing the man page")?;
    Ok(ExitCode::SUCCESS)
}

fn write_completions(shell: Shell, out: &mut dyn Write) {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "lapse", out);
}

fn write_man(out: &mut dyn Write) -> io::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Subcommands every generated text must name; a missing one means the generator was given
    /// a different command tree from the one the binary parses.
    const SUBCOMMANDS: [&str; 8] = [
        "serve",
        "grant",
        "revoke",
        "history",
        "request",
        "approve",
        "doctor",
        "completions",
    ];

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut buf = Vec::new();
        f(&mut buf);
        String::from_utf8(buf).expect("generated text is UTF-8")
    }

    #[test]
    fn bash_completion_offers_the_subcommands_and_their_flags() {
        let script = text(|b| write_completions(Shell::Bash, b));
        assert!(script.contains("complete -F _lapse"), "{script}");
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "bash completion lacks {sub}");
        }
        assert!(script.contains("--reason"), "grant's flags are completed");
    }

    #[test]
    fn zsh_and_fish_completions_name_the_subcommands() {
        for shell in [Shell::Zsh, Shell::Fish] {
            let script = text(|b| write_completions(shell, b));
            for sub in SUBCOMMANDS {
                assert!(script.contains(sub), "{shell} completion lacks {sub}");
            }
        }
    }

    #[test]
    fn man_page_has_a_title_and_lists_the_subcommands() {
        let page = text(|b| write_man(b).expect("rendering the man page"));
        assert!(page.contains(".TH lapse 1"), "{page}");
        assert!(page.contains("SUBCOMMANDS"), "{page}");
        for sub in SUBCOMMANDS {
            assert!(page.contains(sub), "man page lacks {sub}");
        }
    }
}
