//! The CLI's HTTP client: the daemon's address, one request with its token, the failures a
//! command can end with, and writing a rendering to stdout.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use reqwest::{StatusCode, Url};
use serde_json::Value;

/// Where `lapse serve` listens unless configured otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7420";

/// A connection that cannot be made in this time will not be made by waiting longer; saying so
/// quickly beats hanging an on-call engineer's terminal.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Every call but a waited-for submission is a database read or a single write.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Why a client command did not succeed, each kind printed and mapped to an exit code once, in
/// [`report`].
#[derive(Debug)]
pub(crate) enum Failure {
    /// Wrong use of the CLI itself, caught before any request.
    Usage {
        field: String,
        message: String,
        fix: String,
    },
    /// The API answered with an error status.
    Api {
        status: StatusCode,
        body: Vec<u8>,
    },
    /// No answer at all.
    Unreachable {
        source: reqwest::Error,
    },
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

/// A successful answer: its status (201 and 200 differ for submissions) and its JSON body.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

pub(crate) struct ApiClient {
    pub(crate) http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl ApiClient {
    pub(crate) fn new(url: &str, token: Option<String>) -> Result<Self, Failure> {
        let base = parse_base_url(url)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("lapse/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("could not set up the HTTP client")?;
        Ok(ApiClient { http, base, token })
    }

    pub(crate) fn url(
        &self,
        segments: &[&str],
        query: &[(&str, Option<String>)],
    ) -> Result<Url, Failure> {
        Ok(endpoint(&self.base, segments, query)?)
    }

    pub(crate) async fn send(
        &self,
        mut request: reqwest::RequestBuilder,
    ) -> Result<Reply, Failure> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|source| Failure::Unreachable { source })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|source| Failure::Unreachable { source })?;
        if !status.is_success() {
            return Err(Failure::Api {
                status,
                body: bytes.to_vec(),
            });
        }
        let body = serde_json::from_slice(&bytes).with_context(|| {
            format!("the server at {} answered HTTP {status} with something that is not JSON; is --url pointing at lapse?", self.base)
        })?;
        Ok(Reply { status, body })
    }
}

pub(crate) fn parse_base_url(raw: &str) -> Result<Url, Failure> {
    let usage = |message: String| Failure::Usage {
        field: "--url".to_owned(),
        message,
        fix: format!("give the daemon's address, e.g. --url {DEFAULT_URL}"),
    };
    let url = Url::parse(raw).map_err(|e| usage(format!("`{raw}` is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(usage(format!("`{raw}` is not an http or https URL")));
    }
    if url.cannot_be_a_base() {
        return Err(usage(format!(
            "`{raw}` cannot have API paths appended to it"
        )));
    }
    Ok(url)
}

/// `base` with path `segments` appended (each percent-encoded, so an ID cannot change the path)
/// and the present query parameters. A base with a path prefix keeps it, for a daemon behind a
/// reverse proxy.
pub(crate) fn endpoint(
    base: &Url,
    segments: &[&str],
    query: &[(&str, Option<String>)],
) -> anyhow::Result<Url> {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("{base} cannot have API paths appended to it"))?
        .pop_if_empty()
        .extend(segments);
    let present: Vec<(&str, &str)> = query
        .iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
        .collect();
    // Only touch the query when there is one: an empty serializer still leaves a bare `?`.
    if !present.is_empty() {
        url.query_pairs_mut().extend_pairs(present);
    }
    Ok(url)
}

/// How wide tables may be: none with `--wide`; else `COLUMNS` when set (so scripts and tests
/// choose), else the terminal's width when stdout is one; output to a pipe or file is never
/// shortened, so `lapse list | grep` sees whole cells.
pub(crate) fn table_width(wide: bool) -> Option<usize> {
    if wide {
        return None;
    }
    if let Some(n) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return Some(n);
    }
    // comfy-table asks the terminal (through crossterm) only when stdout is one.
    comfy_table::Table::new().width().map(usize::from)
}

/// Writes a rendering to stdout. A reader that goes away early (`lapse list | head`) is not an
/// error of ours, so a broken pipe ends quietly instead of panicking as `println!` would.
pub(crate) fn emit(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_all(text.as_bytes())
        .and_then(|()| {
            if text.ends_with('\n') {
                Ok(())
            } else {
                out.write_all(b"\n")
            }
        })
        .and_then(|()| out.flush());
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(anyhow::Error::new(e)
            .context("could not write to stdout")
            .into()),
        _ => Ok(()),
    }
}
