//! Parsing and printing of times.

use aeon_core::tree::Timestamp;
use anyhow::{Result, bail};
use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone, Utc};

/// Accepts RFC 3339, or "YYYY-MM-DD HH:MM[:SS]" taken as UTC.
pub fn parse(text: &str) -> Result<DateTime<FixedOffset>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t);
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, fmt) {
            return Ok(Utc.from_utc_datetime(&naive).fixed_offset());
        }
    }
    bail!("cannot read time {text:?}: use RFC 3339 or \"YYYY-MM-DD HH:MM[:SS]\" (UTC)")
}

pub fn local(t: &DateTime<FixedOffset>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

pub fn from_timestamp(t: Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.0, t.1)
}

pub fn rfc3339_nanos(t: Timestamp) -> String {
    from_timestamp(t)
        .map(|d| {
            d.with_timezone(&Local)
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, false)
        })
        .unwrap_or_else(|| format!("{}.{:09}", t.0, t.1))
}
