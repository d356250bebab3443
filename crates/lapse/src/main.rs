//! The `lapse` binary: the daemon (`serve`, `demo`), its local admin commands and the CLI client.

mod api;
mod cli;
#[cfg(feature = "demo")]
mod demo;
mod generate;
mod local;
mod openapi;
mod requests;
mod serve;
mod telemetry;

use std::process::ExitCode;

use crate::cli::Command;

fn main() -> ExitCode {
    let cli = cli::parse();
    // People's times in their own zone unless `--utc`; exports are UTC either way.
    lapse_output::set_zone(if cli.global.utc {
        lapse_output::Zone::Utc
    } else {
        lapse_output::Zone::Local
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => {
                local::serve(args.config.as_deref(), args.port_file.as_deref()).await
            }
            #[cfg(feature = "demo")]
            Command::Demo(args) => demo::run(args).await,
            #[cfg(not(feature = "demo"))]
            Command::Demo(_) => Err(anyhow::anyhow!(
                "this build of lapse has no demo; build it with the `demo` feature (on by default)"
            )),
            Command::Token(cmd) => local::token(cmd, cli.global.output).await,
            Command::Config(cmd) => local::config(cmd, cli.global.output),
            Command::Doctor(args) => local::doctor(args.config.as_deref(), cli.global.output).await,
            Command::Audit(cli::AuditCmd::Verify(args)) if args.checkpoints.is_some() => {
                local::audit_verify(&args, cli.global.output).await
            }
            Command::Login(args) => cli::login::login(args).await,
            Command::Logout => cli::login::logout(),
            Command::Completions(args) => generate::completions(args.shell),
            Command::Man => generate::man(),
            other => cli::run_client(other, &cli.global).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
