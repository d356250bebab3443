//! PagerDuty's REST API v2 `GET /oncalls`, as lapse uses it.
//!
//! Requests must carry `Authorization: Token token=<key>` (else 401 with PagerDuty's error
//! object) and `Accept: application/vnd.pagerduty+json;version=2`. Filters: `schedule_ids[]`,
//! `since`/`until` (default: now), `include[]=users` (full user objects with `email`; otherwise
//! `user_reference`s), `limit`/`offset` with `more`. [`PdMode`] makes it answer 503, 500 or
//! slowly.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// How the stand-in behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PdMode {
    Up,
    /// 503, as when PagerDuty is down.
    Down,
    /// 500 with PagerDuty's error object.
    Erroring,
    /// Answers correctly, after this long.
    Slow(Duration),
}

/// One on-call entry: `user` is on call on `schedule` from `start` to `end` (`None`: always).
#[derive(Debug, Clone)]
pub struct Shift {
    pub schedule_id: String,
    pub schedule_name: String,
    pub user_id: String,
    pub user_name: String,
    pub email: String,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

struct Inner {
    key: String,
    mode: PdMode,
    shifts: Vec<Shift>,
    /// The query string of every request.
    calls: Vec<String>,
}

#[derive(Clone)]
pub struct PagerDutySim {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl PagerDutySim {
    pub async fn start(key: &str) -> std::io::Result<PagerDutySim> {
        let inner = Arc::new(Mutex::new(Inner {
            key: key.to_owned(),
            mode: PdMode::Up,
            shifts: Vec::new(),
            calls: Vec::new(),
        }));
        let app = axum::Router::new()
            .route("/oncalls", get(oncalls))
            .with_state(inner.clone());
        let addr = crate::serve(app).await?;
        Ok(PagerDutySim { addr, inner })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// As `https://api.pagerduty.com` is for PagerDuty.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_mode(&self, mode: PdMode) {
        self.lock().mode = mode;
    }

    pub fn add_shift(&self, s: Shift) {
        self.lock().shifts.push(s);
    }

    /// `email` on call on `schedule` now, for a day either side.
    pub fn on_call_now(&self, schedule: &str, user_id: &str, email: &str) {
        let now = Utc::now();
        self.add_shift(Shift {
            schedule_id: schedule.to_owned(),
            schedule_name: format!("Schedule {schedule}"),
            user_id: user_id.to_owned(),
            user_name: email.split('@').next().unwrap_or(email).to_owned(),
            email: email.to_owned(),
            start: Some(now - chrono::Duration::days(1)),
            end: Some(now + chrono::Duration::days(1)),
        });
    }

    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "error": { "message": message, "code": code, "errors": [] } }).to_string(),
    )
        .into_response()
}

async fn oncalls(
    State(inner): State<Arc<Mutex<Inner>>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    let (mode, key) = {
        let mut i = inner.lock().unwrap_or_else(|p| p.into_inner());
        i.calls.push(query.clone());
        (i.mode, i.key.clone())
    };
    match mode {
        PdMode::Down => return error(StatusCode::SERVICE_UNAVAILABLE, 0, "Service Unavailable"),
        PdMode::Erroring => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, 2001, "Internal Error");
        }
        PdMode::Slow(d) => tokio::time::sleep(d).await,
        PdMode::Up => {}
    }
    let h = |n: header::HeaderName| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    if h(header::AUTHORIZATION) != format!("Token token={key}") {
        return error(StatusCode::UNAUTHORIZED, 2006, "Authentication Required");
    }
    if h(header::ACCEPT) != "application/vnd.pagerduty+json;version=2" {
        return error(
            StatusCode::BAD_REQUEST,
            2001,
            "Invalid Input Provided: Accept",
        );
    }
    let mut schedules = Vec::new();
    let mut users = false;
    let (mut since, mut until) = (Utc::now(), Utc::now());
    let (mut limit, mut offset) = (25usize, 0usize);
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "schedule_ids[]" => schedules.push(v.into_owned()),
            "include[]" => users |= v == "users",
            "since" | "until" => {
                let Ok(t) = DateTime::parse_from_rfc3339(&v) else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        2001,
                        "Invalid Input Provided: time",
                    );
                };
                if k == "since" {
                    since = t.to_utc();
                } else {
                    until = t.to_utc();
                }
            }
            "limit" => limit = v.parse().unwrap_or(25).clamp(1, 100),
            "offset" => offset = v.parse().unwrap_or(0),
            "time_zone" | "earliest" | "user_ids[]" | "escalation_policy_ids[]" => {}
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    2001,
                    &format!("Invalid Input Provided: {k}"),
                );
            }
        }
    }
    let shifts = inner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .shifts
        .clone();
    let matching: Vec<Value> = shifts
        .iter()
        .filter(|s| schedules.is_empty() || schedules.contains(&s.schedule_id))
        .filter(|s| s.start.is_none_or(|st| st <= until) && s.end.is_none_or(|e| e > since))
        .map(|s| {
            let user = if users {
                json!({ "id": s.user_id, "type": "user", "name": s.user_name, "email": s.email,
                    "summary": s.user_name, "time_zone": "Etc/UTC",
                    "self": format!("https://api.pagerduty.com/users/{}", s.user_id) })
            } else {
                json!({ "id": s.user_id, "type": "user_reference", "summary": s.user_name,
                    "self": format!("https://api.pagerduty.com/users/{}", s.user_id) })
            };
            json!({
                "escalation_policy": { "id": "PEP0SIM", "type": "escalation_policy_reference", "summary": "Default" },
                "escalation_level": 1,
                "schedule": { "id": s.schedule_id, "type": "schedule_reference", "summary": s.schedule_name },
                "user": user,
                "start": s.start,
                "end": s.end,
            })
        })
        .collect();
    let total = matching.len();
    let page: Vec<Value> = matching.into_iter().skip(offset).take(limit).collect();
    let more = offset + page.len() < total;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "oncalls": page, "limit": limit, "offset": offset, "more": more, "total": null })
            .to_string(),
    )
        .into_response()
}
