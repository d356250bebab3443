//! Request validation: the rules a grant must meet before anything is stored or sent.
//!
//! Every refusal names the field, what was wrong and how to fix it.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

/// A refusal of one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message} ({fix})")]
pub struct FieldError {
    pub field: String,
    pub message: String,
    pub fix: String,
}

impl FieldError {
    pub fn new(
        field: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// Limits on what a grant request may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_ttl: Duration,
    pub max_reason_chars: usize,
    pub max_principals: usize,
    /// How far ahead a start may be scheduled.
    pub max_start_ahead: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_ttl: Duration::hours(24),
            max_reason_chars: 500,
            max_principals: 100,
            max_start_ahead: Duration::days(30),
        }
    }
}

/// A duration the way settings, list files and the CLI write it (`1h 30m`): lapse's one exact
/// duration formatter.
pub fn human_duration(d: Duration) -> String {
    let Ok(std) = d.to_std() else {
        return d.to_string();
    };
    // As people write durations (and as `--for` reads them): `3h30m`, `2d`, `90s`, `250ms`.
    let secs = std.as_secs();
    let millis = std.subsec_millis();
    if secs == 0 {
        return format!("{millis}ms");
    }
    let mut out = String::new();
    for (value, unit) in [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3_600, "h"),
        (secs % 3_600 / 60, "m"),
        (secs % 60, "s"),
    ] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    if millis > 0 {
        out.push_str(&format!("{millis}ms"));
    }
    out
}

/// Parse a time-to-live such as `90m` or `2h30m` and check it against the limits.
pub fn parse_ttl(field: &str, input: &str, limits: &Limits) -> Result<Duration, FieldError> {
    let fix = format!(
        "give a positive duration such as `90m` or `2h30m`, at most {}",
        human_duration(limits.max_ttl)
    );
    let text = input.trim();
    if text.is_empty() {
        return Err(FieldError::new(field, "is empty", fix));
    }
    let std = humantime::parse_duration(text).map_err(|e| {
        FieldError::new(
            field,
            format!("`{input}` is not a duration: {e}"),
            fix.clone(),
        )
    })?;
    let ttl = Duration::from_std(std)
        .map_err(|_| FieldError::new(field, format!("`{input}` is too long"), fix.clone()))?;
    check_ttl(field, ttl, limits)?;
    Ok(ttl)
}

/// Check a duration against the limits.
pub fn check_ttl(field: &str, ttl: Duration, limits: &Limits) -> Result<(), FieldError> {
    let fix = format!(
        "give a positive duration such as `90m` or `2h30m`, at most {}",
        human_duration(limits.max_ttl)
    );
    if ttl <= Duration::zero() {
        return Err(FieldError::new(field, "must be longer than zero", fix));
    }
    if ttl < Duration::seconds(1) {
        return Err(FieldError::new(field, "must be at least one second", fix));
    }
    if ttl > limits.max_ttl {
        let max = human_duration(limits.max_ttl);
        return Err(FieldError::new(
            field,
            format!(
                "{} is longer than the maximum of {max}",
                human_duration(ttl)
            ),
            // A value that would be accepted: the maximum itself.
            format!("ask for `{max}` or less, e.g. `{max}`"),
        ));
    }
    Ok(())
}

/// Work out `(starts_at, expires_at)` from an optional start and either a duration or an end.
pub fn window(
    now: DateTime<Utc>,
    starts_at: Option<DateTime<Utc>>,
    ttl: Option<&str>,
    expires_at: Option<DateTime<Utc>>,
    limits: &Limits,
) -> Result<(DateTime<Utc>, DateTime<Utc>), FieldError> {
    let start = match starts_at {
        Some(s) if s > now + limits.max_start_ahead => {
            return Err(FieldError::new(
                "starts_at",
                format!(
                    "is more than {} ahead",
                    human_duration(limits.max_start_ahead)
                ),
                "schedule the grant closer to its start",
            ));
        }
        Some(s) if s > now => s,
        _ => now,
    };
    match (ttl, expires_at) {
        (Some(_), Some(_)) => Err(FieldError::new(
            "duration",
            "both a duration and an expiry were given",
            "give either `duration` (e.g. `2h`) or `expires_at`, not both",
        )),
        (None, None) => Err(FieldError::new(
            "duration",
            "is missing",
            "give a duration such as `90m` or `2h30m`, or an absolute `expires_at`",
        )),
        (Some(t), None) => Ok((start, start + parse_ttl("duration", t, limits)?)),
        (None, Some(end)) => {
            if end <= start {
                return Err(FieldError::new(
                    "expires_at",
                    format!(
                        "{} is not after the start {}",
                        end.to_rfc3339(),
                        start.to_rfc3339()
                    ),
                    "give a time in the future, in RFC 3339 (e.g. 2026-01-31T18:00:00Z)",
                ));
            }
            check_ttl("expires_at", end - start, limits)?;
            Ok((start, end))
        }
    }
}

impl From<crate::text::TextError> for FieldError {
    fn from(e: crate::text::TextError) -> Self {
        FieldError::new(
            &e.field,
            e.problem.to_string(),
            "send one line of plain text within the limit",
        )
    }
}

/// Check the reason: present, not blank, not over the limit, no control characters.
pub fn check_reason(reason: &str, limits: &Limits) -> Result<String, FieldError> {
    let r = reason.trim();
    crate::text::check_text("reason", r, crate::text::TextKind::Reason)?;
    if r.is_empty() {
        return Err(FieldError::new(
            "reason",
            "is empty",
            "say why the access is needed, e.g. a ticket id such as `INC-4211`",
        ));
    }
    let n = r.chars().count();
    if n > limits.max_reason_chars {
        return Err(FieldError::new(
            "reason",
            format!(
                "is {n} characters long, over the limit of {}",
                limits.max_reason_chars
            ),
            "shorten it and link to the ticket for details",
        ));
    }
    if r.chars().any(|c| c.is_control()) {
        return Err(FieldError::new(
            "reason",
            "contains control characters",
            "use a single line of plain text",
        ));
    }
    Ok(r.to_owned())
}

#[cfg(test)]
mod human_duration_tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human_duration(Duration::seconds(12_600)), "3h30m");
        assert_eq!(human_duration(Duration::days(2)), "2d");
        assert_eq!(human_duration(Duration::seconds(90)), "1m30s");
        assert_eq!(human_duration(Duration::milliseconds(250)), "250ms");
        assert_eq!(human_duration(Duration::seconds(93_784)), "1d2h3m4s");
        // And `--for` reads them back.
        for d in ["3h30m", "2d", "1m30s", "1d2h3m4s"] {
            let parsed = humantime::parse_duration(d).expect(d);
            assert_eq!(human_duration(Duration::from_std(parsed).expect("fits")), d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_table() {
        let l = Limits::default();
        for bad in ["0", "0s", "-5m", "forever", "", "25h", "2 fortnights"] {
            let e = parse_ttl("duration", bad, &l).expect_err(bad);
            assert_eq!(e.field, "duration", "{bad}");
            assert!(!e.fix.is_empty());
        }
        assert_eq!(parse_ttl("duration", "90m", &l), Ok(Duration::minutes(90)));
        assert_eq!(
            parse_ttl("duration", "2h30m", &l),
            Ok(Duration::minutes(150))
        );
        assert_eq!(parse_ttl("duration", "24h", &l), Ok(Duration::hours(24)));
    }

    #[test]
    fn window_rules() {
        let l = Limits::default();
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("t")
            .to_utc();
        assert_eq!(
            window(now, None, Some("1h"), None, &l),
            Ok((now, now + Duration::hours(1)))
        );
        let later = now + Duration::hours(2);
        assert_eq!(
            window(now, Some(later), Some("1h"), None, &l),
            Ok((later, later + Duration::hours(1)))
        );
        assert_eq!(
            window(now, None, None, None, &l)
                .expect_err("missing")
                .field,
            "duration"
        );
        assert_eq!(
            window(now, None, None, Some(now - Duration::hours(1)), &l)
                .expect_err("past")
                .field,
            "expires_at"
        );
        assert_eq!(
            window(now, None, None, Some(now + Duration::hours(30)), &l)
                .expect_err("long")
                .field,
            "expires_at"
        );
        assert!(window(now, None, Some("1h"), Some(now + Duration::hours(1)), &l).is_err());
    }

    #[test]
    fn reason_rules() {
        let l = Limits::default();
        assert_eq!(check_reason("  INC-4211 ", &l), Ok("INC-4211".to_owned()));
        assert_eq!(check_reason("   ", &l).expect_err("blank").field, "reason");
        assert!(check_reason(&"x".repeat(501), &l).is_err());
        assert!(check_reason("a\u{7}b", &l).is_err());
    }
}

#[cfg(test)]
mod over_maximum_tests {
    use super::*;

    #[test]
    fn an_over_maximum_duration_suggests_one_within_it() {
        let limits = Limits {
            max_ttl: Duration::seconds(12_600),
            ..Limits::default()
        };
        let e = parse_ttl("duration", "5h", &limits).expect_err("over the maximum");
        assert_eq!(e.field, "duration");
        assert!(
            e.message.contains("5h is longer than the maximum of 3h30m"),
            "{e:?}"
        );
        assert!(e.fix.contains("`3h30m`"), "{e:?}");
        // The suggestion is accepted.
        assert!(parse_ttl("duration", "3h30m", &limits).is_ok());
    }
}
