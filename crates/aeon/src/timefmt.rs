//! Parsing and printing of times.

use aeon_core::tree::Timestamp;
use anyhow::{Result, bail};
use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone, Utc};

/// Accepts RFC 3339; `YYYY-MM-DD[ HH:MM[:SS]]` taken as UTC; and relative forms: "now",
/// "today" (midnight UTC), "yesterday" (24 hours ago), "N minutes|hours|days|weeks ago".
pub fn parse(text: &str) -> Result<DateTime<FixedOffset>> {
    parse_at(text, Utc::now())
}

pub fn parse_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<FixedOffset>> {
    let t = text.trim().to_ascii_lowercase();
    match t.as_str() {
        "now" => return Ok(now.fixed_offset()),
        "today" => {
            let midnight = now.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default();
            return Ok(Utc.from_utc_datetime(&midnight).fixed_offset());
        }
        "yesterday" => return Ok((now - chrono::Duration::days(1)).fixed_offset()),
        _ => {}
    }
    if let Some(rest) = t.strip_suffix(" ago") {
        let mut parts = rest.split_whitespace();
        if let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next())
            && let Ok(n) = n.parse::<i64>()
        {
            let secs = match unit.trim_end_matches('s') {
                "second" | "sec" => 1,
                "minute" | "min" => 60,
                "hour" => 3600,
                "day" => 86_400,
                "week" => 7 * 86_400,
                "month" => 30 * 86_400,
                "year" => 365 * 86_400,
                _ => bail!("unknown time unit {unit:?} in {text:?}"),
            };
            return chrono::TimeDelta::try_seconds(n.saturating_mul(secs))
                .and_then(|ago| now.checked_sub_signed(ago))
                .map(|t| t.fixed_offset())
                .ok_or_else(|| anyhow::anyhow!("{text:?} is further back than dates go"));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        return Ok(Utc
            .from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
            .fixed_offset());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t);
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%:z", "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%d %H:%M%:z"] {
        if let Ok(t) = DateTime::parse_from_str(text.trim(), fmt) {
            return Ok(t);
        }
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, fmt) {
            return Ok(Utc.from_utc_datetime(&naive).fixed_offset());
        }
    }
    bail!(
        "cannot read time {text:?}: use RFC 3339, \"YYYY-MM-DD HH:MM[:SS]\" (UTC), or e.g. \"2 hours ago\", \"yesterday\""
    )
}

pub fn local(t: &DateTime<FixedOffset>) -> String {
    t.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S").to_string()
}

pub fn from_timestamp(t: Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.0, t.1)
}

pub fn rfc3339_nanos(t: Timestamp) -> String {
    from_timestamp(t)
        .map(|d| d.with_timezone(&Local).to_rfc3339_opts(chrono::SecondsFormat::Nanos, false))
        .unwrap_or_else(|| format!("{}.{:09}", t.0, t.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_and_relative_forms() {
        let now = DateTime::parse_from_rfc3339("2026-11-21T12:00:00Z").unwrap().with_timezone(&Utc);
        let p = |s| parse_at(s, now).unwrap().to_rfc3339();
        assert_eq!(p("2026-11-20 14:00"), "2026-11-20T14:00:00+00:00");
        assert_eq!(p("2026-11-20 14:00:30"), "2026-11-20T14:00:30+00:00");
        assert_eq!(p("2026-11-20T14:00:00+02:00"), "2026-11-20T14:00:00+02:00");
        assert_eq!(p("2026-11-20"), "2026-11-20T00:00:00+00:00");
        assert_eq!(p("2 hours ago"), "2026-11-21T10:00:00+00:00");
        assert_eq!(p("1 day ago"), "2026-11-20T12:00:00+00:00");
        assert_eq!(p("yesterday"), "2026-11-20T12:00:00+00:00");
        assert_eq!(p("today"), "2026-11-21T00:00:00+00:00");
        assert!(parse_at("next tuesday", now).is_err());
        assert!(parse_at("3 fortnights ago", now).is_err());
    }
}
