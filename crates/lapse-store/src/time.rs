//! The one text form of timestamps in the database: UTC, RFC 3339, microseconds, `Z`.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::StoreError;

/// Formats `t` as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
///
/// Fixed width (for years 0000–9999) so that text order is time order; precision below a
/// microsecond is dropped, so callers that compare round-tripped values should use
/// microsecond-precision times.
pub fn format_ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses a stored timestamp. Any RFC 3339 offset is accepted and converted to UTC, so rows
/// written by hand in another form still read back as the same instant.
pub fn parse_ts(column: &'static str, s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt {
            step: "reading a timestamp",
            column,
            value: s.to_owned(),
            reason: e.to_string(),
        })
}

pub(crate) fn parse_opt_ts(
    column: &'static str,
    s: Option<String>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    s.as_deref().map(|s| parse_ts(column, s)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn fixed_width_and_round_trip() {
        let t = Utc.with_ymd_and_hms(2025, 3, 4, 5, 6, 7).single().unwrap()
            + chrono::Duration::microseconds(89);
        let s = format_ts(t);
        assert_eq!(s, "2025-03-04T05:06:07.000089Z");
        assert_eq!(parse_ts("t", &s).unwrap(), t);
        let whole = Utc.with_ymd_and_hms(2025, 3, 4, 5, 6, 7).single().unwrap();
        assert_eq!(format_ts(whole), "2025-03-04T05:06:07.000000Z");
    }

    #[test]
    fn text_order_is_time_order() {
        let a = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 9).single().unwrap();
        let b = a + chrono::Duration::microseconds(1);
        let c = a + chrono::Duration::seconds(1);
        assert!(format_ts(a) < format_ts(b));
        assert!(format_ts(b) < format_ts(c));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(
            parse_ts("at", "yesterday"),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
