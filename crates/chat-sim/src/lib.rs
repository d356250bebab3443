//! Stand-ins for the chat and on-call services lapse talks to, each a real HTTP server on
//! loopback answering as the service documents:
//!
//! - [`slack`]: the Web API methods lapse calls (`chat.postMessage`, `chat.update`,
//!   `users.info`, `chat.postEphemeral`), with `ok:false` errors and 429 with `Retry-After`,
//!   recording every call; and Slack's side of interactivity: signing interaction payloads and
//!   slash commands and sending them to lapse exactly as Slack does.
//! - [`pagerduty`]: `GET /oncalls` of the REST API v2, with a switch to be down, slow or
//!   erroring.

pub mod pagerduty;
pub mod slack;

pub use pagerduty::{PagerDutySim, PdMode};
pub use slack::SlackSim;

async fn serve(app: axum::Router) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}
