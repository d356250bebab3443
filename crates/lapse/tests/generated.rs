//! The built binary prints its version, completion scripts and man page: what
//! `deploy/package.sh` runs to put them into the Debian package.

use std::process::Command;

fn lapse(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lapse"))
        .args(args)
        .output()
        .expect("running lapse");
    assert!(
        out.status.success(),
        "lapse {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn version_names_the_package_version() {
    let v = lapse(&["--version"]);
    assert_eq!(v.trim(), format!("lapse {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn completions_for_each_shell_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let script = lapse(&["completions", shell]);
        for sub in ["grant", "revoke", "requests", "config"] {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
    }
}

#[test]
fn man_page_is_roff_with_the_subcommands() {
    let page = lapse(&["man"]);
    assert!(
        page.starts_with(".ie"),
        "roff preamble: {}",
        &page[..page.len().min(200)]
    );
    assert!(page.contains(".TH lapse 1"));
    for sub in ["grant", "revoke", "requests", "doctor"] {
        assert!(page.contains(sub), "man page lacks {sub}");
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_lapse"))
        .args(["completions", "tcsh"])
        .output()
        .expect("running lapse");
    assert_eq!(out.status.code(), Some(2));
}
