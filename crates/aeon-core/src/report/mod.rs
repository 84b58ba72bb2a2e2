//! The compliance report (`aeon report`): what is protected, per host and path, and how well:
//! the last backup and its age, the retention policy and whether the points kept match it, the
//! last check and scrub coverage, protected points, key slots, quota use and the audit log's
//! state. Rendered as Markdown, a self-contained HTML page, or JSON by [`render()`].

pub mod metrics;
pub mod render;

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;

use crate::audit;
use crate::error::Result;
use crate::keys::manage::SlotInfo;
use crate::repository::Repository;
use crate::retention::{self, GroupBy, PolicySource};

pub use render::{Format, render};

#[derive(Debug, Clone, Serialize)]
pub struct ComplianceReport {
    pub generated: DateTime<FixedOffset>,
    pub repository: RepositoryFacts,
    /// One entry per host and set of paths backed up.
    pub sources: Vec<SourceStatus>,
    /// Recovery points that could not be read (named, never skipped silently).
    pub unreadable_points: Vec<String>,
    pub retention: RetentionStatus,
    pub verification: Verification,
    pub protected_points: Vec<PointSummary>,
    pub key_slots: Vec<SlotInfo>,
    pub quota: QuotaUse,
    pub audit: AuditStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct RepositoryFacts {
    pub id: String,
    pub location: String,
    pub format_version: u8,
    pub created: DateTime<FixedOffset>,
    pub locations: Vec<String>,
    /// `10+2`, when parity is on.
    pub parity: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    pub host: String,
    pub paths: Vec<String>,
    pub points: usize,
    pub protected_points: usize,
    pub last_backup: Option<DateTime<FixedOffset>>,
    /// Hours since the last backup, when there is one.
    pub last_backup_age_hours: Option<f64>,
    pub last_point: Option<String>,
    /// Files the last backup could not read.
    pub last_backup_errors: u64,
    pub last_backup_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PointSummary {
    pub id: String,
    pub time: DateTime<FixedOffset>,
    pub host: String,
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RetentionStatus {
    /// Stored policies by category (`*`: any other), described.
    pub policies: BTreeMap<String, String>,
    /// Whether the points kept are exactly what the policies keep: no point beyond them.
    pub adheres: bool,
    /// Points the stored policies would remove now (`forget` has not run since they expired).
    pub beyond_policy: Vec<String>,
    /// Groups no stored policy covers (everything in them is kept).
    pub uncovered_groups: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// The last `check` the audit log records: when, its outcome and whether it read all data.
    pub last_check: Option<CheckRecord>,
    /// The last restore the audit log records, with its measured time.
    pub last_restore: Option<CheckRecord>,
    /// The last disaster-recovery drill (`aeon dr drill`): its outcome and measured figures.
    pub last_drill: Option<CheckRecord>,
    /// The rolling scrub: when the current pass began and how much of the data it has read.
    pub scrub_pass_started: Option<DateTime<FixedOffset>>,
    pub scrub_pass_bytes: u64,
    pub scrub_coverage_percent: Option<f64>,
    pub last_full_scrub: Option<DateTime<FixedOffset>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckRecord {
    pub time: String,
    pub outcome: String,
    pub arguments: Vec<String>,
    pub seconds: Option<f64>,
    /// Every figure the record carries (bytes, files, bytes_per_second, …).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub figures: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuotaUse {
    pub used_bytes: u64,
    pub limit_bytes: Option<u64>,
    pub used_percent: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditStatus {
    pub intact: bool,
    pub records: usize,
    pub heads: Vec<String>,
    pub problems: Vec<audit::Problem>,
}

/// Builds the report from the repository as it is now.
pub fn compliance(repo: &Repository) -> Result<ComplianceReport> {
    let now = chrono::Local::now().fixed_offset();
    let settings = repo.settings();
    let (points, unreadable) = repo.list_snapshots()?;

    let mut by_source: BTreeMap<(String, Vec<String>), Vec<&crate::snapshot::SnapshotEntry>> =
        BTreeMap::new();
    for p in &points {
        let mut paths = p.snapshot.paths.clone();
        paths.sort();
        by_source.entry((p.snapshot.hostname.clone(), paths)).or_default().push(p);
    }
    let sources = by_source
        .into_iter()
        .map(|((host, paths), members)| {
            let last = members.iter().max_by_key(|e| e.snapshot.time);
            SourceStatus {
                host,
                paths,
                points: members.len(),
                protected_points: members.iter().filter(|e| e.snapshot.protected).count(),
                last_backup: last.map(|e| e.snapshot.time),
                last_backup_age_hours: last.map(|e| {
                    (now.with_timezone(&Utc) - e.snapshot.time.with_timezone(&Utc)).num_seconds()
                        as f64
                        / 3600.0
                }),
                last_point: last.map(|e| e.id.to_hex()),
                last_backup_errors: last.map_or(0, |e| e.snapshot.summary.errors),
                last_backup_bytes: last.map_or(0, |e| e.snapshot.summary.total_bytes),
            }
        })
        .collect();

    let retention = if settings.retention.is_empty() {
        RetentionStatus {
            policies: BTreeMap::new(),
            adheres: true,
            beyond_policy: Vec::new(),
            uncovered_groups: 0,
        }
    } else {
        let source = PolicySource::PerCategory(settings.retention.clone());
        let plan = retention::plan(points.clone(), &source, GroupBy::default(), &chrono::Local)?;
        let beyond: Vec<String> = plan
            .iter()
            .flat_map(|g| g.points.iter())
            .filter(|(_, v)| !v.keep)
            .map(|(e, _)| e.id.to_hex())
            .collect();
        RetentionStatus {
            policies: settings.retention.iter().map(|(k, p)| (k.clone(), p.describe())).collect(),
            adheres: beyond.is_empty(),
            beyond_policy: beyond,
            uncovered_groups: plan.iter().filter(|g| g.policy.is_none()).count(),
        }
    };

    let log = audit::entries(repo.storage().as_ref(), repo.cipher())?;
    let last_of = |op: &str| {
        log.iter().rev().find(|e| e.body.operation == op).map(|e| CheckRecord {
            time: e.body.time.clone(),
            outcome: e.body.outcome.clone(),
            arguments: e.body.arguments.clone(),
            seconds: e.body.figures.get("seconds").copied(),
            figures: e.body.figures.clone(),
        })
    };
    let (scrub, _) = crate::check::scrub::load_state(repo)?;
    let data_bytes: u64 =
        repo.index().packs().iter().filter(|p| !p.condemned).map(|p| p.size).sum();
    let verification = Verification {
        last_check: last_of("check"),
        last_restore: last_of("restore"),
        last_drill: last_of("drill"),
        scrub_pass_started: scrub.as_ref().map(|s| s.pass_started),
        scrub_pass_bytes: scrub.as_ref().map_or(0, |s| s.pass_bytes),
        scrub_coverage_percent: scrub
            .as_ref()
            .filter(|_| data_bytes > 0)
            .map(|s| (s.pass_bytes as f64 * 100.0 / data_bytes as f64).min(100.0)),
        last_full_scrub: scrub.as_ref().and_then(|s| s.last_full_pass),
    };

    let used = repo.storage_used()?;
    let audit_report = audit::verify(repo.storage().as_ref(), repo.cipher(), None)?;
    Ok(ComplianceReport {
        generated: now,
        repository: RepositoryFacts {
            id: repo.repository_id(),
            location: repo.storage().location(),
            format_version: repo.format_version(),
            created: settings.created,
            locations: settings.locations.clone(),
            parity: settings.parity.map(|p| p.to_string()),
        },
        sources,
        unreadable_points: unreadable.iter().map(|(name, e)| format!("{name}: {e}")).collect(),
        retention,
        verification,
        protected_points: points
            .iter()
            .filter(|e| e.snapshot.protected)
            .map(|e| PointSummary {
                id: e.id.to_hex(),
                time: e.snapshot.time,
                host: e.snapshot.hostname.clone(),
                paths: e.snapshot.paths.clone(),
            })
            .collect(),
        key_slots: repo.key_list()?,
        quota: QuotaUse {
            used_bytes: used,
            limit_bytes: settings.quota,
            used_percent: settings.quota.filter(|&l| l > 0).map(|l| used as f64 * 100.0 / l as f64),
        },
        audit: AuditStatus {
            intact: audit_report.intact(),
            records: audit_report.records,
            heads: audit_report.heads,
            problems: audit_report.problems,
        },
    })
}

/// What is known of one recovery point's soundness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PointCondition {
    /// Every file the backup met is in it.
    Complete,
    /// The backup could not read some files: the point lacks them.
    Partial,
    /// `repair snapshots` rewrote it without files whose data was lost.
    Repaired,
}

/// A recovery point's health: its condition, and when a `check --read-data` that succeeded read
/// all the data after the point was written, if one did. (A completed scrub pass does not
/// count: packs written while it ran may lie behind its cursor.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PointHealth {
    pub condition: PointCondition,
    pub verified_at: Option<DateTime<FixedOffset>>,
}

/// The health of `point` given the repository's `verification` record.
pub fn point_health(point: &crate::snapshot::Snapshot, verification: &Verification) -> PointHealth {
    let condition = if point.tags.iter().any(|t| t == "repaired") {
        PointCondition::Repaired
    } else if point.summary.errors > 0 {
        PointCondition::Partial
    } else {
        PointCondition::Complete
    };
    let full_check = verification
        .last_check
        .as_ref()
        .filter(|c| c.outcome == "ok" && c.arguments.iter().any(|a| a == "--read-data"))
        .and_then(|c| {
            // The record is written when the check ends: it read only what existed when it began.
            let end = DateTime::parse_from_rfc3339(&c.time).ok()?;
            let began = end - chrono::Duration::milliseconds((c.seconds? * 1000.0) as i64);
            (began > point.time).then_some(end)
        });
    let verified_at = full_check;
    PointHealth { condition, verified_at }
}
