//! Retention: which recovery points a policy keeps.
//!
//! The rules follow restic's, so that a policy moved from restic keeps the same points:
//! recovery points are taken newest first; `keep_last N` keeps the N newest; `keep_daily N`
//! keeps the newest point of each of the N newest days that have one (likewise hourly, weekly
//! (ISO weeks), monthly, yearly); `keep_within D` keeps every point taken within D of the
//! newest one; `keep_within_daily D` keeps the newest point of each day within D of the newest
//! one; `keep_tags` keeps points carrying all tags of one of its entries. A point is kept if any
//! rule keeps it, and every reason is reported. Protected points are always kept. Finally
//! `max_points N` removes the oldest kept points that are not protected until at most N remain.
//!
//! Calendar buckets are taken in a caller-chosen time zone (the local one by default), by wall
//! clock: on the day clocks go back, the repeated hour is one hourly bucket; days are local
//! days whatever their length. Points with the same time are ordered by id, so results never
//! depend on listing order.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, FixedOffset, Months, TimeDelta, TimeZone, Timelike};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::Id;
use crate::snapshot::SnapshotEntry;

/// A calendar span like restic's: `1y6m` (years, months), `14d`, `2w`, `36h`, combinable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl Span {
    /// `t` minus this span, by calendar (a month back from 31 March is the end of February).
    pub fn before<Tz: TimeZone>(&self, t: &DateTime<Tz>) -> DateTime<Tz> {
        let months = self.years.saturating_mul(12).saturating_add(self.months);
        let t = t.clone().checked_sub_months(Months::new(months)).unwrap_or_else(|| t.clone());
        t - TimeDelta::days(self.days as i64) - TimeDelta::hours(self.hours as i64)
    }
}

impl FromStr for Span {
    type Err = Error;
    fn from_str(text: &str) -> Result<Span> {
        let bad = || {
            Error::InvalidInput(format!(
                "invalid duration {text:?}: use numbers with y (years), m (months), w (weeks), \
                 d (days), h (hours), e.g. 1y6m or 14d"
            ))
        };
        let mut span = Span::default();
        let mut digits = String::new();
        for c in text.trim().chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let n: u32 = digits.parse().map_err(|_| bad())?;
            digits.clear();
            match c {
                'y' => span.years += n,
                'm' => span.months += n,
                'w' => span.days += n * 7,
                'd' => span.days += n,
                'h' => span.hours += n,
                _ => return Err(bad()),
            }
        }
        if !digits.is_empty() || text.trim().is_empty() {
            return Err(bad());
        }
        Ok(span)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut any = false;
        for (n, unit) in
            [(self.years, 'y'), (self.months, 'm'), (self.days, 'd'), (self.hours, 'h')]
        {
            if n > 0 {
                write!(f, "{n}{unit}")?;
                any = true;
            }
        }
        if !any {
            write!(f, "0h")?;
        }
        Ok(())
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Span, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The calendar units of bucket rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unit {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Unit {
    pub const ALL: [Unit; 5] =
        [Unit::Hourly, Unit::Daily, Unit::Weekly, Unit::Monthly, Unit::Yearly];

    pub fn name(self) -> &'static str {
        match self {
            Unit::Hourly => "hourly",
            Unit::Daily => "daily",
            Unit::Weekly => "weekly",
            Unit::Monthly => "monthly",
            Unit::Yearly => "yearly",
        }
    }

    /// The bucket a local time falls in.
    fn bucket<Tz: TimeZone>(self, t: &DateTime<Tz>) -> (i32, u32, u32, u32) {
        match self {
            Unit::Hourly => (t.year(), t.month(), t.day(), t.hour()),
            Unit::Daily => (t.year(), t.month(), t.day(), 0),
            Unit::Weekly => {
                let w = t.iso_week();
                (w.year(), w.week(), 0, 0)
            }
            Unit::Monthly => (t.year(), t.month(), 0, 0),
            Unit::Yearly => (t.year(), 0, 0, 0),
        }
    }
}

/// A retention policy. Every rule is optional; a policy with none is refused by
/// [`RetentionPolicy::validate`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<Span>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within_hourly: Option<Span>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within_daily: Option<Span>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within_weekly: Option<Span>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within_monthly: Option<Span>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within_yearly: Option<Span>,
    /// Each entry is a comma-separated set of tags a point must all carry to be kept.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keep_tags: Vec<String>,
    /// Never more than this many recovery points per group (protected ones always stay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_points: Option<u32>,
}

impl RetentionPolicy {
    fn count(&self, unit: Unit) -> Option<u32> {
        match unit {
            Unit::Hourly => self.keep_hourly,
            Unit::Daily => self.keep_daily,
            Unit::Weekly => self.keep_weekly,
            Unit::Monthly => self.keep_monthly,
            Unit::Yearly => self.keep_yearly,
        }
    }

    fn within(&self, unit: Unit) -> Option<Span> {
        match unit {
            Unit::Hourly => self.keep_within_hourly,
            Unit::Daily => self.keep_within_daily,
            Unit::Weekly => self.keep_within_weekly,
            Unit::Monthly => self.keep_within_monthly,
            Unit::Yearly => self.keep_within_yearly,
        }
    }

    /// True if some rule other than `max_points` is set.
    fn has_keep_rules(&self) -> bool {
        self.keep_last.is_some()
            || Unit::ALL.iter().any(|&u| self.count(u).is_some() || self.within(u).is_some())
            || self.keep_within.is_some()
            || !self.keep_tags.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        !self.has_keep_rules() && self.max_points.is_none()
    }

    pub fn validate(&self) -> Result<()> {
        if self.is_empty() {
            return Err(Error::InvalidInput(
                "the retention policy has no rule, so it would remove every recovery point".into(),
            ));
        }
        Ok(())
    }

    /// `keep-daily 7, keep-within 30d, max-points 100`
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.keep_last {
            parts.push(format!("keep-last {n}"));
        }
        for u in Unit::ALL {
            if let Some(n) = self.count(u) {
                parts.push(format!("keep-{} {n}", u.name()));
            }
        }
        if let Some(s) = self.keep_within {
            parts.push(format!("keep-within {s}"));
        }
        for u in Unit::ALL {
            if let Some(s) = self.within(u) {
                parts.push(format!("keep-within-{} {s}", u.name()));
            }
        }
        for t in &self.keep_tags {
            parts.push(format!("keep-tag {t}"));
        }
        if let Some(n) = self.max_points {
            parts.push(format!("max-points {n}"));
        }
        parts.join(", ")
    }
}

/// What a policy needs to know of a recovery point.
#[derive(Debug, Clone)]
pub struct Point {
    pub id: Id,
    pub time: DateTime<FixedOffset>,
    pub tags: Vec<String>,
    pub protected: bool,
}

/// The verdict on one point: kept (with every reason) or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub keep: bool,
    pub reasons: Vec<String>,
}

/// Applies `policy` to `points` (any order), bucketing calendar rules in `tz`. Returns one
/// verdict per point, in the order given.
pub fn apply<Tz: TimeZone>(points: &[Point], policy: &RetentionPolicy, tz: &Tz) -> Vec<Verdict> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    // Newest first; equal times by id, so that ties are decided the same way every time.
    order.sort_by(|&a, &b| {
        points[b].time.cmp(&points[a].time).then(points[a].id.cmp(&points[b].id))
    });
    let mut verdicts = vec![Verdict { keep: false, reasons: Vec::new() }; points.len()];
    let Some(&newest) = order.first() else {
        return verdicts;
    };
    let newest_local = points[newest].time.with_timezone(tz);

    let mut last_left = policy.keep_last;
    let mut counts: BTreeMap<Unit, u32> =
        Unit::ALL.iter().filter_map(|&u| policy.count(u).map(|n| (u, n))).collect();
    let mut last_bucket: BTreeMap<Unit, (i32, u32, u32, u32)> = BTreeMap::new();
    let mut last_within_bucket: BTreeMap<Unit, (i32, u32, u32, u32)> = BTreeMap::new();
    let within_cutoff = policy.keep_within.map(|s| s.before(&newest_local));
    let within_unit_cutoffs: BTreeMap<Unit, (Span, DateTime<Tz>)> = Unit::ALL
        .iter()
        .filter_map(|&u| policy.within(u).map(|s| (u, (s, s.before(&newest_local)))))
        .collect();
    let keep_all_first = !policy.has_keep_rules();

    for &i in &order {
        let p = &points[i];
        let local = p.time.with_timezone(tz);
        let reasons = &mut verdicts[i].reasons;
        if p.protected {
            reasons.push("protected".into());
        }
        if keep_all_first {
            reasons.push("max-points".into());
        }
        if let Some(n) = last_left.as_mut().filter(|n| **n > 0) {
            *n -= 1;
            reasons.push("last".into());
        }
        for (&unit, left) in counts.iter_mut() {
            let b = unit.bucket(&local);
            if *left > 0 && last_bucket.get(&unit) != Some(&b) {
                *left -= 1;
                last_bucket.insert(unit, b);
                reasons.push(unit.name().into());
            }
        }
        if let (Some(cut), Some(span)) = (&within_cutoff, policy.keep_within)
            && local >= *cut
        {
            reasons.push(format!("within {span}"));
        }
        for (&unit, (span, cut)) in &within_unit_cutoffs {
            let b = unit.bucket(&local);
            if local >= *cut && last_within_bucket.get(&unit) != Some(&b) {
                last_within_bucket.insert(unit, b);
                reasons.push(format!("within-{} {span}", unit.name()));
            }
        }
        for set in &policy.keep_tags {
            let wanted: Vec<&str> =
                set.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
            if !wanted.is_empty() && wanted.iter().all(|w| p.tags.iter().any(|t| t == w)) {
                reasons.push(format!("tag {set}"));
            }
        }
        verdicts[i].keep = !verdicts[i].reasons.is_empty();
    }

    if let Some(max) = policy.max_points {
        let mut kept = order.iter().filter(|&&i| verdicts[i].keep).count();
        for &i in order.iter().rev() {
            if kept <= max as usize {
                break;
            }
            if verdicts[i].keep && !points[i].protected {
                verdicts[i].keep = false;
                verdicts[i].reasons.clear();
                kept -= 1;
            }
        }
    }
    verdicts
}

/// What recovery points are grouped by before a policy is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBy {
    pub host: bool,
    pub paths: bool,
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy { host: true, paths: true, tags: false }
    }
}

impl FromStr for GroupBy {
    type Err = Error;
    fn from_str(text: &str) -> Result<GroupBy> {
        let mut g = GroupBy { host: false, paths: false, tags: false };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "paths" | "path" => g.paths = true,
                "tags" | "tag" => g.tags = true,
                other => {
                    return Err(Error::InvalidInput(format!(
                        "cannot group by {other:?}: use host, paths and tags, comma-separated, \
                         or \"\" for no grouping"
                    )));
                }
            }
        }
        Ok(g)
    }
}

/// The key recovery points are grouped under.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GroupKey {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Set when stored per-category policies are applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

impl GroupKey {
    fn of(e: &SnapshotEntry, by: GroupBy, with_category: bool) -> GroupKey {
        let s = &e.snapshot;
        let sorted = |v: &Vec<String>| {
            let mut v = v.clone();
            v.sort();
            v
        };
        GroupKey {
            host: by.host.then(|| s.hostname.clone()),
            paths: by.paths.then(|| sorted(&s.paths)),
            tags: by.tags.then(|| sorted(&s.tags)),
            category: with_category.then(|| s.category.clone().unwrap_or_default()),
        }
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host {h}"));
        }
        if let Some(p) = &self.paths {
            parts.push(format!("paths [{}]", p.join(", ")));
        }
        if let Some(t) = &self.tags {
            parts.push(format!("tags [{}]", t.join(", ")));
        }
        if let Some(c) = &self.category {
            parts.push(format!("category {}", if c.is_empty() { "(none)" } else { c }));
        }
        if parts.is_empty() { "all recovery points".into() } else { parts.join(", ") }
    }
}

/// The policy to use: one given for this run, or the ones stored per category.
#[derive(Debug, Clone)]
pub enum PolicySource {
    Given(RetentionPolicy),
    /// By category; `*` applies to categories without their own. Points of a category with no
    /// policy are all kept.
    PerCategory(BTreeMap<String, RetentionPolicy>),
}

/// One group's outcome.
#[derive(Debug, Clone)]
pub struct GroupPlan {
    pub key: GroupKey,
    /// The policy applied, described; `None` when no policy covers the group (all kept).
    pub policy: Option<String>,
    /// Newest first.
    pub points: Vec<(SnapshotEntry, Verdict)>,
}

/// Groups `entries` and decides, in each group, what its policy keeps.
pub fn plan<Tz: TimeZone>(
    entries: Vec<SnapshotEntry>,
    source: &PolicySource,
    group_by: GroupBy,
    tz: &Tz,
) -> Result<Vec<GroupPlan>> {
    let per_category = matches!(source, PolicySource::PerCategory(_));
    match source {
        PolicySource::Given(p) => p.validate()?,
        PolicySource::PerCategory(map) => {
            for (category, p) in map {
                p.validate().map_err(|e| {
                    Error::InvalidInput(format!("stored policy for category {category}: {e}"))
                })?;
            }
        }
    }
    let mut groups: BTreeMap<GroupKey, Vec<SnapshotEntry>> = BTreeMap::new();
    for e in entries {
        groups.entry(GroupKey::of(&e, group_by, per_category)).or_default().push(e);
    }
    let mut out = Vec::new();
    for (key, members) in groups {
        let policy = match source {
            PolicySource::Given(p) => Some(p),
            PolicySource::PerCategory(map) => {
                let category = key.category.clone().unwrap_or_default();
                map.get(&category).or_else(|| map.get("*"))
            }
        };
        let verdicts: Vec<Verdict> = match policy {
            Some(p) => {
                let points: Vec<Point> = members
                    .iter()
                    .map(|e| Point {
                        id: e.id,
                        time: e.snapshot.time,
                        tags: e.snapshot.tags.clone(),
                        protected: e.snapshot.protected,
                    })
                    .collect();
                apply(&points, p, tz)
            }
            None => members
                .iter()
                .map(|_| Verdict {
                    keep: true,
                    reasons: vec!["no policy for this category".into()],
                })
                .collect(),
        };
        let mut points: Vec<_> = members.into_iter().zip(verdicts).collect();
        points.sort_by(|a, b| b.0.snapshot.time.cmp(&a.0.snapshot.time).then(a.0.id.cmp(&b.0.id)));
        out.push(GroupPlan { key, policy: policy.map(RetentionPolicy::describe), points });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
