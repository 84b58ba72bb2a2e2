//! The disaster-recovery runbook (`aeon dr plan`): for each host and set of paths, the newest
//! sound recovery point, where it is stored and how those locations are, which keys open it,
//! the commands that restore and prove it, and how long that should take by the throughput
//! measured (by drills, else by restores the audit log records).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::error::Result;
use crate::keys::manage::SlotInfo;
use crate::report::{self, CheckRecord, PointCondition};
use crate::repository::Repository;

#[derive(Debug, Clone, Serialize)]
pub struct Runbook {
    pub generated: DateTime<FixedOffset>,
    pub repository: String,
    pub repository_id: String,
    pub locations: Vec<LocationHealth>,
    /// Key slots able to read (any one opens the repository).
    pub keys: Vec<SlotInfo>,
    pub last_drill: Option<CheckRecord>,
    /// Bytes a second a restore is expected to reach, and what measured it.
    pub throughput: Option<(f64, String)>,
    pub sources: Vec<SourcePlan>,
    /// Points that cannot be read (they are not offered).
    pub unreadable: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LocationHealth {
    pub location: String,
    pub reachable: bool,
    /// What it lacks that the others have (a multi-location repository), or its error.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourcePlan {
    pub host: String,
    pub paths: Vec<String>,
    pub point: String,
    pub time: DateTime<FixedOffset>,
    pub files: u64,
    pub bytes: u64,
    /// `complete`, or why a newer point was passed over.
    pub condition: PointCondition,
    pub verified_at: Option<DateTime<FixedOffset>>,
    pub newer_points_passed_over: usize,
    pub estimated_seconds: Option<f64>,
    pub commands: Vec<String>,
}

/// Builds the runbook of `repo` (opened with its index).
pub fn runbook(repo: &Repository) -> Result<Runbook> {
    let facts = report::compliance(repo)?;
    let location = repo.storage().location();
    let locations = match repo.mirror() {
        Some(m) => crate::locations::status(m)
            .into_iter()
            .map(|s| LocationHealth {
                problem: s.error.clone().or_else(|| {
                    (!s.missing.is_empty()).then(|| {
                        format!(
                            "lacks {} object(s) the others have ({} bytes): `aeon locations sync`",
                            s.missing.len(),
                            s.missing_bytes
                        )
                    })
                }),
                location: s.location,
                reachable: s.reachable,
            })
            .collect(),
        None => vec![LocationHealth { location: location.clone(), reachable: true, problem: None }],
    };
    let keys: Vec<SlotInfo> = facts
        .key_slots
        .iter()
        .filter(|s| s.access != Some(crate::keys::Access::WriteOnly))
        .cloned()
        .collect();
    let last_drill = facts.verification.last_drill.clone();
    let throughput = measured_throughput(&facts.verification);

    let (entries, unreadable) = repo.list_snapshots()?;
    let mut groups: BTreeMap<(String, Vec<String>), Vec<&crate::snapshot::SnapshotEntry>> =
        BTreeMap::new();
    for e in &entries {
        let mut paths = e.snapshot.paths.clone();
        paths.sort();
        groups.entry((e.snapshot.hostname.clone(), paths)).or_default().push(e);
    }
    let mut sources = Vec::new();
    for ((host, paths), mut points) in groups {
        points.sort_by_key(|e| std::cmp::Reverse((e.snapshot.time, e.id)));
        let health = |e: &crate::snapshot::SnapshotEntry| {
            report::point_health(&e.snapshot, &facts.verification)
        };
        // The newest complete point; if none is complete, the newest.
        let chosen = points
            .iter()
            .position(|e| health(e).condition == PointCondition::Complete)
            .unwrap_or(0);
        let e = points[chosen];
        let h = health(e);
        let s = &e.snapshot.summary;
        let id = e.id.to_hex();
        let short = &id[..8];
        let mut commands = vec![format!("aeon -r {location} restore {short} --target /")];
        commands.push(format!("aeon -r {location} verify {short} --target /"));
        for p in &paths {
            commands.push(format!(
                "aeon -r {location} restore {short}:{p} --target {p}    # one source alone"
            ));
        }
        sources.push(SourcePlan {
            host,
            paths,
            point: id.clone(),
            time: e.snapshot.time,
            files: s.total_files,
            bytes: s.total_bytes,
            condition: h.condition,
            verified_at: h.verified_at,
            newer_points_passed_over: chosen,
            estimated_seconds: throughput
                .as_ref()
                .map(|(bps, _)| s.total_bytes as f64 / bps.max(1.0)),
            commands,
        });
    }
    Ok(Runbook {
        generated: chrono::Local::now().fixed_offset(),
        repository: location,
        repository_id: repo.repository_id(),
        locations,
        keys,
        last_drill,
        throughput,
        sources,
        unreadable: unreadable.iter().map(|(n, e)| format!("{n}: {e}")).collect(),
    })
}

/// Restore speed from the last drill, else from the last restore the log records.
fn measured_throughput(v: &report::Verification) -> Option<(f64, String)> {
    let of = |r: &CheckRecord, what: &str| {
        let bytes = r.figures.get("bytes").copied()?;
        let seconds = r.seconds.filter(|s| *s > 0.0)?;
        (bytes > 0.0).then(|| (bytes / seconds, format!("{what} of {}", short_time(&r.time))))
    };
    v.last_drill.as_ref().filter(|d| d.outcome == "ok").and_then(|d| of(d, "the drill")).or_else(
        || v.last_restore.as_ref().filter(|r| r.outcome == "ok").and_then(|r| of(r, "the restore")),
    )
}

/// An RFC 3339 time to the second, as people read it.
fn short_time(text: &str) -> String {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S %:z").to_string())
        .unwrap_or_else(|_| text.to_string())
}

/// Bytes as people read them (the report's units).
fn bytes(n: f64) -> String {
    report::render::human_bytes(n.max(0.0) as u64)
}

fn duration(seconds: f64) -> String {
    match seconds {
        s if s < 1.0 => "under a second".to_string(),
        s if s < 90.0 => format!("{s:.0} s"),
        s if s < 5400.0 => format!("{:.0} min", s / 60.0),
        s => format!("{:.1} h", s / 3600.0),
    }
}

impl Runbook {
    /// The runbook as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut m = String::new();
        let _ = writeln!(m, "# Disaster-recovery runbook\n");
        let _ = writeln!(
            m,
            "Repository `{}` (id `{}`), generated {}.\n",
            self.repository,
            &self.repository_id[..16.min(self.repository_id.len())],
            self.generated.format("%Y-%m-%d %H:%M:%S %:z")
        );
        let _ = writeln!(m, "## Where it is stored\n");
        for l in &self.locations {
            let state = match (&l.problem, l.reachable) {
                (_, false) => "**unreachable**".to_string(),
                (Some(p), true) => format!("reachable; {p}"),
                (None, true) => "reachable, complete".to_string(),
            };
            let _ = writeln!(m, "- `{}`: {state}", l.location);
        }
        let _ = writeln!(m, "\n## Keys that open it\n");
        if self.keys.is_empty() {
            let _ = writeln!(m, "- (none listed)");
        }
        for k in &self.keys {
            let kind = k
                .slot_type
                .map(|t| format!("{t:?}").to_lowercase())
                .unwrap_or_else(|| "unknown".into());
            let label = k.label.as_deref().map(|l| format!(" \"{l}\"")).unwrap_or_default();
            let _ = writeln!(m, "- slot `{}`: {kind}{label}", &k.id[..8.min(k.id.len())]);
        }
        let _ = writeln!(
            m,
            "\nAny one of them opens the repository: a password (`AEON_PASSWORD`, `--password-file`) or `--key-file FILE`. Keep one of them somewhere the disaster cannot reach.\n"
        );
        let _ = writeln!(m, "## Recovery time\n");
        match (&self.throughput, &self.last_drill) {
            (Some((bps, source)), _) => {
                let _ = writeln!(m, "Measured restore speed: {}/s ({source}).", bytes(*bps));
            }
            (None, _) => {
                let _ = writeln!(m, "No restore speed measured yet: run `aeon dr drill`.");
            }
        }
        if let Some(d) = &self.last_drill {
            let _ = writeln!(m, "Last drill: {} — {}.", short_time(&d.time), d.outcome);
        }
        let _ = writeln!(m, "\n## Sources\n");
        for s in &self.sources {
            let _ = writeln!(m, "### {} — {}\n", s.host, s.paths.join(", "));
            let verified = s
                .verified_at
                .map(|t| {
                    format!(", all data read back by a check at {}", t.format("%Y-%m-%d %H:%M"))
                })
                .unwrap_or_default();
            let _ = writeln!(
                m,
                "- Newest sound point: `{}` of {} ({:?}{verified}): {} files, {}.",
                &s.point[..8],
                s.time.format("%Y-%m-%d %H:%M:%S %:z"),
                s.condition,
                s.files,
                bytes(s.bytes as f64)
            );
            if s.newer_points_passed_over > 0 {
                let _ = writeln!(
                    m,
                    "- {} newer point(s) passed over: they lack files the backup could not read.",
                    s.newer_points_passed_over
                );
            }
            match s.estimated_seconds {
                Some(t) => {
                    let _ = writeln!(m, "- Estimated recovery time: {}.", duration(t));
                }
                None => {
                    let _ = writeln!(
                        m,
                        "- Estimated recovery time: unknown until a drill measures it."
                    );
                }
            }
            let _ = writeln!(m, "\n```sh");
            for c in &s.commands {
                let _ = writeln!(m, "{c}");
            }
            let _ = writeln!(m, "```\n");
        }
        if !self.unreadable.is_empty() {
            let _ = writeln!(m, "## Points that cannot be read\n");
            for u in &self.unreadable {
                let _ = writeln!(m, "- {u}");
            }
        }
        m
    }
}
