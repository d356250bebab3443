//! `lapse login` and `lapse logout`: sign in at the OpenID issuer from a terminal (a loopback
//! redirect, lapse-oidc's `native`), keep the ID token in the user's config directory (0600),
//! and use it for API calls when no `--token` is given.

use std::process::ExitCode;
use std::time::Duration;

use chrono::Utc;
use clap::Args;
use lapse_oidc::native::{self, LoopbackSignIn};

/// How long `lapse login` waits for the browser.
const WAIT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Examples:\n  lapse login --issuer https://accounts.example.com --client-id lapse-cli\n  lapse login --issuer https://accounts.example.com --client-id lapse-cli --no-browser"
)]
pub struct LoginArgs {
    /// The OpenID issuer, exactly as the daemon's `[auth.oidc] issuer`.
    #[arg(long, env = "LAPSE_OIDC_ISSUER", value_name = "URL")]
    pub issuer: String,
    /// The CLI's client id at the issuer: a public (native) client with a loopback redirect
    /// `http://127.0.0.1/callback`, listed in the daemon's `[auth.oidc] audiences`.
    #[arg(long, env = "LAPSE_OIDC_CLIENT_ID", value_name = "ID")]
    pub client_id: String,
    /// Scopes to ask for.
    #[arg(long, value_delimiter = ',', default_value = "openid,email")]
    pub scopes: Vec<String>,
    /// Print the sign-in URL only; do not try to open a browser.
    #[arg(long)]
    pub no_browser: bool,
}

pub async fn login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let Some(file) = native::login_file() else {
        anyhow::bail!("no place to keep the login: set HOME, XDG_CONFIG_HOME or LAPSE_LOGIN_FILE");
    };
    let signin = LoopbackSignIn::start(&args.issuer, &args.client_id, &args.scopes)
        .await
        .map_err(anyhow::Error::msg)?;
    eprintln!("Sign in at:\n{}", signin.url);
    if !args.no_browser {
        // Best effort: where no browser can be opened, the URL above is enough.
        let _ = std::process::Command::new("xdg-open")
            .arg(&signin.url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    let login = signin.finish(WAIT).await.map_err(anyhow::Error::msg)?;
    native::save(&file, &login)?;
    eprintln!(
        "Signed in; the token is kept in {} (readable by you only).",
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn logout() -> anyhow::Result<ExitCode> {
    let Some(file) = native::login_file() else {
        return Ok(ExitCode::SUCCESS);
    };
    match std::fs::remove_file(&file) {
        Ok(()) => eprintln!("Signed out; {} removed.", file.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => eprintln!("Not signed in."),
        Err(e) => anyhow::bail!("removing {}: {e}", file.display()),
    }
    Ok(ExitCode::SUCCESS)
}

/// The stored login's token, when it has not expired.
pub fn stored_token() -> Option<String> {
    let file = native::login_file()?;
    native::load(&file, Utc::now()).map(|l| l.id_token)
}
