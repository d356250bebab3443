//! One GraphQL call over HTTP: budgets, the API key header, and the classification of every failure.

use std::error::Error as _;
use std::num::NonZeroU32;
use std::time::Duration;

use lapse_core::provider::{Priority, ProviderError, ProviderResult, WriteTerms};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::budget::Budget;
use crate::config::{ClientConfig, ConfigError};
use crate::ops::{Envelope, GraphqlRequest, Mutation, Operation, Query};

/// Enough for a network name to reach its region; a loop is a configuration problem.
const MAX_REGION_REDIRECTS: usize = 5;

/// The origin (`https://host[:port]`) of a `Location`, which may be relative to `endpoint`.
fn api_url_origin(endpoint: &str, location: &str) -> Option<String> {
    let base = reqwest::Url::parse(endpoint).ok()?;
    Some(base.join(location).ok()?.origin().ascii_serialization())
}

/// What Twingate's clients assume when a 429 carries no `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
enum Kind {
    Read,
    Write(Priority),
}

/// Why one HTTP attempt did not produce data.
enum AttemptError {
    /// HTTP 429: not processed, safe to repeat after the wait.
    RateLimited(Duration),
    Failed(ProviderError),
}

/// The `outcome` label of a failed call.
fn outcome_of(e: &ProviderError) -> &'static str {
    match e {
        ProviderError::Transient(_) => "transient",
        ProviderError::RateLimited { .. } => "rate_limited",
        ProviderError::AlreadyGone(_) => "gone",
        ProviderError::UnknownOutcome(_) => "unknown_outcome",
        ProviderError::Rejected(_) => "rejected",
        ProviderError::Unauthorized(_) => "unauthorized",
        _ => "error",
    }
}

/// Where the API answers: the configured base URL, or the regional one it redirects to.
struct Api {
    base_url: String,
    endpoint: String,
}

pub(crate) struct Transport {
    http: reqwest::Client,
    /// Follows redirects and carries no key: used once, to find the network's regional address.
    probe: reqwest::Client,
    base_url: String,
    api: tokio::sync::OnceCell<Api>,
    api_key: SecretString,
    /// Built once and marked sensitive, so HTTP-level logging prints it as redacted.
    key_header: HeaderValue,
    reads: Budget,
    writes: Budget,
    read_retries: u32,
    rate_limit_patience: Duration,
    /// The last answer's `Date` header minus the local time it arrived, for `lapse doctor`.
    skew: std::sync::Mutex<Option<chrono::TimeDelta>>,
}

impl Transport {
    pub fn new(config: &ClientConfig) -> Result<Self, ConfigError> {
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base_url).map_err(|e| ConfigError::BaseUrl {
            url: config.base_url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ConfigError::BaseUrl {
                url: config.base_url.clone(),
                reason: "the scheme must be http or https".to_owned(),
            });
        }
        let key = config.api_key.expose_secret();
        if key.is_empty() {
            return Err(ConfigError::EmptyApiKey);
        }
        let mut key_header =
            HeaderValue::from_str(key).map_err(|_| ConfigError::ApiKeyNotAHeader)?;
        key_header.set_sensitive(true);

        let reads = NonZeroU32::new(config.reads_per_minute)
            .ok_or(ConfigError::ZeroBudget("reads_per_minute"))?;
        let writes = NonZeroU32::new(config.writes_per_minute)
            .ok_or(ConfigError::ZeroBudget("writes_per_minute"))?;

        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout.min(config.timeout))
            // API calls never follow a redirect: that would send the key somewhere else. The
            // regional address is found once, by `probe`, which sends no key.
            // reqwest's own default retries stay on: they cover only protocol refusals
            // (HTTP/2 REFUSED_STREAM, graceful GOAWAY) that the server guarantees it did not process.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConfigError::HttpClient(e.to_string()))?;
        let probe = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout.min(config.timeout))
            .redirect(reqwest::redirect::Policy::limited(MAX_REGION_REDIRECTS))
            .build()
            .map_err(|e| ConfigError::HttpClient(e.to_string()))?;

        Ok(Self {
            http,
            probe,
            api: tokio::sync::OnceCell::new(),
            base_url,
            api_key: config.api_key.clone(),
            key_header,
            reads: Budget::per_minute("reads", reads),
            writes: Budget::per_minute("writes", writes),
            read_retries: config.read_retries,
            rate_limit_patience: config.rate_limit_patience,
            skew: std::sync::Mutex::new(None),
        })
    }

    /// The base URL calls go to: the regional one once it is known, else the configured one.
    pub fn base_url(&self) -> &str {
        self.api.get().map_or(&self.base_url, |a| &a.base_url)
    }

    /// How far the API's clock (its last `Date` header) is ahead of ours; `None` before an
    /// answer with a readable `Date`. The header has whole seconds, so this is within a second.
    pub fn clock_skew(&self) -> Option<chrono::TimeDelta> {
        *self
            .skew
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn note_date(&self, headers: &reqwest::header::HeaderMap) {
        let now = chrono::Utc::now();
        let Some(date) = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        else {
            return;
        };
        // Our clock is read after the whole second the header names began.
        let ours = now - chrono::TimeDelta::milliseconds(i64::from(now.timestamp_subsec_millis()));
        *self
            .skew
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(date.with_timezone(&chrono::Utc) - ours);
    }

    /// The API's address, resolved once before the first call (as Twingate's Terraform provider
    /// does): redirects from the configured base URL are followed and the final host is kept.
    async fn api(&self) -> ProviderResult<&Api> {
        self.api.get_or_try_init(|| self.resolve_region()).await
    }

    async fn resolve_region(&self) -> ProviderResult<Api> {
        let configured = &self.base_url;
        let answer = self
            .probe
            .get(format!("{configured}/api/graphql/"))
            .send()
            .await
            .map_err(|e| {
                let reason = chain(&e);
                if e.is_redirect() {
                    ProviderError::Misconfigured(format!(
                        "{configured} redirects more than {MAX_REGION_REDIRECTS} times: {reason}"
                    ))
                } else {
                    ProviderError::Transient(format!(
                        "cannot reach {configured} to find the network's address: {reason}"
                    ))
                }
            })?;
        let at = answer.url();
        let origin = at.origin().ascii_serialization();
        let configured_url = reqwest::Url::parse(configured)
            .map_err(|e| ProviderError::Misconfigured(format!("base URL {configured}: {e}")))?;
        if configured_url.origin() == at.origin() {
            return Ok(Api {
                base_url: configured.clone(),
                endpoint: format!("{configured}/api/graphql/"),
            });
        }
        if configured_url.scheme() == "https" && at.scheme() != "https" {
            return Err(ProviderError::Misconfigured(format!(
                "{configured} redirects to {origin}, which is not https; refusing to send the key there"
            )));
        }
        // Only a move of the API itself counts: a redirect to some other page (a login page,
        // say) is not the network's address, and the calls will say what is wrong.
        let Some(prefix) = at.path().strip_suffix("/api/graphql/") else {
            tracing::warn!(configured = %configured, to = %at, "the base URL redirects away from the API; keeping it");
            return Ok(Api {
                base_url: configured.clone(),
                endpoint: format!("{configured}/api/graphql/"),
            });
        };
        let base_url = format!("{origin}{prefix}");
        tracing::info!(configured = %configured, regional = %base_url, "the network answers at its regional address");
        Ok(Api {
            endpoint: format!("{base_url}/api/graphql/"),
            base_url,
        })
    }

    pub fn write_budget(&self) -> &Budget {
        &self.writes
    }

    /// A read, retried with capped, jittered backoff while it fails transiently.
    pub async fn query<O: Query>(&self, variables: &O::Variables) -> ProviderResult<O::Data> {
        self.execute::<O>(variables, Kind::Read, None).await
    }

    /// A write, sent once (repeated only after a 429, which the server did not process), and
    /// not at all once `terms.not_after` has passed: that is checked each time the write is about
    /// to go out, after its wait for the budget.
    pub async fn mutate<O: Mutation>(
        &self,
        variables: &O::Variables,
        terms: WriteTerms,
    ) -> ProviderResult<O::Data> {
        self.execute::<O>(variables, Kind::Write(terms.priority), terms.not_after)
            .await
    }

    /// A write whose variables are built when the budget hands out its permit (see
    /// `AccessProvider::update_group_users_when_sent`): `build` runs once, after the first
    /// permit, and may decline (`None`: the permit is given back and nothing is sent). A repeat
    /// after a 429 sends the same body.
    pub async fn mutate_when_sent<O: Mutation, T>(
        &self,
        terms: WriteTerms,
        build: impl FnOnce() -> Option<(T, O::Variables)>,
    ) -> Option<(T, ProviderResult<O::Data>)> {
        let mut build = Some(build);
        let mut value = None;
        let result = self
            .execute_built::<O, _>(Kind::Write(terms.priority), terms.not_after, || {
                let (v, vars) = build.take()?()?;
                value = Some(v);
                Some(vars)
            })
            .await;
        match (value, build) {
            (Some(v), _) => Some((v, result)),
            // Failed before a permit was handed out (the API unreachable, too late to send):
            // the caller's own value stands for the call, with the error, so that it is
            // retried with backoff and alarmed on like any other failed write.
            (None, Some(build)) => {
                let e = result.err()?;
                let (v, _) = build()?;
                Some((v, Err(e)))
            }
            // `build` declined: nothing left to send.
            (None, None) => None,
        }
    }

    async fn execute<O: Operation>(
        &self,
        variables: &O::Variables,
        kind: Kind,
        not_after: Option<chrono::DateTime<chrono::Utc>>,
    ) -> ProviderResult<O::Data> {
        self.execute_built::<O, _>(kind, not_after, || Some(variables))
            .await
    }

    /// Sends one operation: waits for the budget, checks `not_after` when about to send, and
    /// builds the body from `build` only then (once; a declined build sends nothing and answers
    /// `Invalid`, which `mutate_when_sent` does not pass on).
    async fn execute_built<O: Operation, V: std::borrow::Borrow<O::Variables>>(
        &self,
        kind: Kind,
        not_after: Option<chrono::DateTime<chrono::Utc>>,
        build: impl FnOnce() -> Option<V>,
    ) -> ProviderResult<O::Data> {
        let terms = WriteTerms {
            priority: Priority::Apply,
            not_after,
        };
        let too_late = || {
            terms.too_late(chrono::Utc::now()).then(|| {
                ProviderError::NotSent(format!(
                    "{}: its grant ends at {}; an apply is not sent at or after the end",
                    O::NAME,
                    not_after.map(|t| t.to_rfc3339()).unwrap_or_default()
                ))
            })
        };
        if let Some(e) = too_late() {
            return Err(e);
        }
        let encode = |variables: &O::Variables| {
            serde_json::to_vec(&GraphqlRequest {
                query: O::DOCUMENT,
                variables,
                operation_name: O::NAME,
            })
            .map_err(|e| {
                ProviderError::Invalid(format!("{}: encoding the request failed: {e}", O::NAME))
            })
        };
        let mut build = Some(build);
        let mut body: Option<Vec<u8>> = None;

        let budget = match kind {
            Kind::Read => &self.reads,
            Kind::Write(_) => &self.writes,
        };
        let priority = match kind {
            Kind::Read => Priority::Apply,
            Kind::Write(p) => p,
        };
        let api = self.api().await.map_err(|e| self.redact(e))?;
        let mut transient_failures = 0u32;
        let mut rate_limit_waited = Duration::ZERO;
        loop {
            let permit = budget.acquire(priority).await;
            if let Some(e) = too_late() {
                permit.forgo();
                tracing::info!(operation = O::NAME, "not sent: its grant has ended");
                return Err(e);
            }
            // Built with the permit in hand, so what it carries is as of now.
            if let Some(build) = build.take() {
                let Some(variables) = build() else {
                    permit.forgo();
                    return Err(ProviderError::Invalid(format!(
                        "{}: nothing left to send",
                        O::NAME
                    )));
                };
                match encode(variables.borrow()) {
                    Ok(b) => body = Some(b),
                    Err(e) => {
                        permit.forgo();
                        return Err(e);
                    }
                }
            }
            let Some(body) = body.as_deref() else {
                permit.forgo();
                return Err(ProviderError::Invalid(format!(
                    "{}: no request body",
                    O::NAME
                )));
            };
            let started = Instant::now();
            let attempt = self.attempt::<O>(api, body, kind).await;
            drop(permit);
            // Each HTTP call, by operation and how it ended: `ok`, `rate_limited`, or the
            // error's class (`transient`, `refused`, ...).
            let outcome = match &attempt {
                Ok(_) => "ok",
                Err(AttemptError::RateLimited(_)) => "rate_limited",
                Err(AttemptError::Failed(e)) => outcome_of(e),
            };
            metrics::histogram!(
                "lapse_twingate_request_duration_seconds",
                "operation" => O::NAME,
                "outcome" => outcome
            )
            .record(started.elapsed().as_secs_f64());
            match attempt {
                Ok(data) => return Ok(data),
                Err(AttemptError::RateLimited(wait)) => {
                    if rate_limit_waited + wait > self.rate_limit_patience {
                        tracing::warn!(
                            operation = O::NAME,
                            ?wait,
                            "rate limited beyond patience; giving up"
                        );
                        return Err(ProviderError::RateLimited { retry_after: wait });
                    }
                    rate_limit_waited += wait;
                    tracing::warn!(
                        operation = O::NAME,
                        ?wait,
                        "rate limited by the server; waiting it out"
                    );
                    // Everyone on this budget waits: the server would refuse them too.
                    budget.hold_off(wait);
                }
                Err(AttemptError::Failed(ProviderError::Transient(reason)))
                    if matches!(kind, Kind::Read) && transient_failures < self.read_retries =>
                {
                    transient_failures += 1;
                    let wait = backoff(transient_failures);
                    tracing::debug!(operation = O::NAME, attempt = transient_failures, ?wait, %reason, "read failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(AttemptError::Failed(error)) => {
                    let error = self.redact(error);
                    tracing::debug!(operation = O::NAME, %error, "call failed");
                    return Err(error);
                }
            }
        }
    }

    async fn attempt<O: Operation>(
        &self,
        api: &Api,
        body: &[u8],
        kind: Kind,
    ) -> Result<O::Data, AttemptError> {
        let op = O::NAME;
        let started = Instant::now();
        let sent = self
            .http
            .post(&api.endpoint)
            .header("X-API-KEY", self.key_header.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return Err(AttemptError::Failed(self.classify_send_error(op, &e, kind))),
        };
        let status = response.status();
        self.note_date(response.headers());
        tracing::debug!(
            operation = op,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "answer"
        );

        if status.is_redirection() {
            // The network moved after start-up; the key is never sent after a redirect.
            let to = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| api_url_origin(&api.endpoint, l))
                .unwrap_or_else(|| "an address it did not give".to_owned());
            return Err(AttemptError::Failed(ProviderError::Misconfigured(format!(
                "{op}: {} redirected the call (HTTP {status}) to {to}; the network has moved: \
                 set base_url to {to} or restart lapse to follow it",
                api.base_url
            ))));
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(AttemptError::RateLimited(retry_after(
                response.headers().get(RETRY_AFTER),
            )));
        }
        if status.is_server_error() {
            return Err(AttemptError::Failed(ProviderError::Transient(format!(
                "{op}: {} answered HTTP {status}",
                self.base_url()
            ))));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => {
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    return Err(AttemptError::Failed(self.unauthorized(op, status, None)));
                }
                return Err(AttemptError::Failed(lost(
                    op,
                    kind,
                    &format!("reading the answer failed: {}", chain(&e)),
                )));
            }
        };
        let envelope: Option<Envelope> = serde_json::from_slice(&bytes).ok();

        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let message = envelope
                .and_then(|e| e.errors)
                .and_then(|errors| errors.into_iter().next())
                .map(|e| e.message);
            return Err(AttemptError::Failed(self.unauthorized(op, status, message)));
        }
        let Some(envelope) = envelope else {
            return Err(AttemptError::Failed(ProviderError::Misconfigured(format!(
                "{op}: {} did not answer with GraphQL JSON (HTTP {status}, content type {content_type}); \
                 is the base URL the network's Twingate address?",
                self.base_url()
            ))));
        };
        let errors = envelope
            .errors
            .filter(|errors| !errors.is_empty())
            .map(|errors| {
                errors
                    .into_iter()
                    .map(|e| e.message)
                    .collect::<Vec<_>>()
                    .join("; ")
            });
        // A 400 is the API refusing the request; any other status means this is not the API.
        if !status.is_success() && status != StatusCode::BAD_REQUEST {
            let detail = errors.map(|m| format!(": {m}")).unwrap_or_default();
            return Err(AttemptError::Failed(ProviderError::Misconfigured(format!(
                "{op}: {} answered HTTP {status}{detail}; is the base URL the network's Twingate address?",
                self.base_url()
            ))));
        }
        if let Some(messages) = errors {
            return Err(AttemptError::Failed(ProviderError::Invalid(format!(
                "{op}: {messages}"
            ))));
        }
        if !status.is_success() {
            return Err(AttemptError::Failed(ProviderError::Invalid(format!(
                "{op}: HTTP {status} without a reason"
            ))));
        }
        let Some(data) = envelope.data.filter(|d| !d.is_null()) else {
            return Err(AttemptError::Failed(ProviderError::Misconfigured(format!(
                "{op}: {} answered without data or errors",
                self.base_url()
            ))));
        };
        serde_json::from_value::<O::Data>(data).map_err(|e| {
            AttemptError::Failed(match kind {
                // The server processed the write; its answer is unreadable, so its effect is unknown.
                // serde's message is left out: it can quote values, and a key's token is one.
                Kind::Write(_) => ProviderError::UnknownOutcome(format!(
                    "{op}: the answer did not have the expected shape ({:?} error)",
                    e.classify()
                )),
                Kind::Read => ProviderError::Misconfigured(format!(
                    "{op}: the answer from {} did not have the expected shape: {e}",
                    self.base_url()
                )),
            })
        })
    }

    fn classify_send_error(&self, op: &str, e: &reqwest::Error, kind: Kind) -> ProviderError {
        let reason = chain(e);
        if e.is_builder() {
            return ProviderError::Misconfigured(format!(
                "{op}: cannot build a request to {}: {reason}",
                self.base_url()
            ));
        }
        if e.is_connect() {
            // Nothing reached the server.
            return ProviderError::Transient(format!(
                "{op}: cannot connect to {}: {reason}",
                self.base_url()
            ));
        }
        let reason = if e.is_timeout() {
            format!("timed out: {reason}")
        } else {
            reason
        };
        lost(op, kind, &reason)
    }

    fn unauthorized(&self, op: &str, status: StatusCode, message: Option<String>) -> ProviderError {
        let detail = message.map(|m| format!(": {m}")).unwrap_or_default();
        ProviderError::Unauthorized(format!(
            "{op}: {} refused the API key (HTTP {status}){detail}; check the key and its permissions",
            self.base_url()
        ))
    }

    /// Server text ends up in error messages; make sure the key never does.
    fn redact(&self, error: ProviderError) -> ProviderError {
        let key = self.api_key.expose_secret();
        let clean = |s: String| {
            if s.contains(key) {
                s.replace(key, "[redacted]")
            } else {
                s
            }
        };
        match error {
            ProviderError::Transient(s) => ProviderError::Transient(clean(s)),
            ProviderError::UnknownOutcome(s) => ProviderError::UnknownOutcome(clean(s)),
            ProviderError::AlreadyGone(s) => ProviderError::AlreadyGone(clean(s)),
            ProviderError::Rejected(s) => ProviderError::Rejected(clean(s)),
            ProviderError::Unauthorized(s) => ProviderError::Unauthorized(clean(s)),
            ProviderError::Misconfigured(s) => ProviderError::Misconfigured(clean(s)),
            ProviderError::Invalid(s) => ProviderError::Invalid(clean(s)),
            ProviderError::NotSent(s) => ProviderError::NotSent(clean(s)),
            other @ ProviderError::RateLimited { .. } => other,
        }
    }
}

/// The request left but its answer did not come back: a read can be repeated, a write may have happened.
fn lost(op: &str, kind: Kind, reason: &str) -> ProviderError {
    match kind {
        Kind::Read => ProviderError::Transient(format!("{op}: {reason}")),
        Kind::Write(_) => ProviderError::UnknownOutcome(format!(
            "{op}: the request was sent but its answer was lost ({reason}); look before acting again"
        )),
    }
}

/// `Retry-After` in whole seconds; anything else (or nothing) means the documented default.
fn retry_after(value: Option<&HeaderValue>) -> Duration {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_RETRY_AFTER)
}

/// Full jitter over a capped exponential, so retrying clients do not move in step.
fn backoff(attempt: u32) -> Duration {
    lapse_core::backoff::backoff(attempt, BACKOFF_BASE, BACKOFF_CAP, rand::random())
}

/// An error with its causes, which is where reqwest keeps the useful part.
fn chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_defaults_to_sixty_seconds() {
        assert_eq!(
            retry_after(Some(&HeaderValue::from_static("7"))),
            Duration::from_secs(7)
        );
        assert_eq!(
            retry_after(Some(&HeaderValue::from_static("soon"))),
            DEFAULT_RETRY_AFTER
        );
        assert_eq!(retry_after(None), DEFAULT_RETRY_AFTER);
    }

    #[test]
    fn backoff_stays_under_the_cap() {
        for attempt in 0..40 {
            assert!(backoff(attempt) <= BACKOFF_CAP);
        }
    }

    #[test]
    fn a_lost_write_is_unknown_and_a_lost_read_is_transient() {
        assert!(matches!(
            lost("X", Kind::Write(Priority::Revoke), "reset"),
            ProviderError::UnknownOutcome(_)
        ));
        assert!(matches!(
            lost("X", Kind::Read, "reset"),
            ProviderError::Transient(_)
        ));
    }

    #[test]
    fn redaction_removes_the_key_from_messages() {
        let mut config = ClientConfig::new("http://127.0.0.1:9", SecretString::from("k3y-s3cret"));
        config.read_retries = 0;
        let transport = Transport::new(&config).expect("transport");
        let e = transport.redact(ProviderError::Invalid(
            "bad token k3y-s3cret here".to_owned(),
        ));
        assert_eq!(
            e,
            ProviderError::Invalid("bad token [redacted] here".to_owned())
        );
    }
}
