//! Prometheus metrics of repositories, from their compliance reports: the text exposition
//! format (version 0.0.4) that `aeon metrics --textfile` writes and the agent serves.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::ComplianceReport;

/// Metric families built up sample by sample, written with one HELP and TYPE line each.
#[derive(Default)]
pub struct Exposition {
    families: BTreeMap<&'static str, (&'static str, &'static str, Vec<String>)>,
}

impl Exposition {
    /// Adds one sample of `name` (a gauge unless the name ends in `_total`).
    pub fn sample(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        let family = self.families.entry(name).or_insert((help, kind, Vec::new()));
        let labels: Vec<String> =
            labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
        let value = if value.is_finite() { format!("{value}") } else { "NaN".to_string() };
        family.2.push(if labels.is_empty() {
            format!("{name} {value}")
        } else {
            format!("{name}{{{}}} {value}", labels.join(","))
        });
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, (help, kind, samples)) in &self.families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for s in samples {
                let _ = writeln!(out, "{s}");
            }
        }
        out
    }

    /// The samples of one repository's report.
    pub fn add_report(&mut self, report: &ComplianceReport) {
        let repository = report.repository.location.as_str();
        let r = [("repository", repository)];
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let size = report.quota.used_bytes as f64;
        self.sample(
            "aeon_repository_size_bytes",
            "Bytes the repository occupies on storage.",
            &r,
            size,
        );
        if let Some(limit) = report.quota.limit_bytes {
            self.sample(
                "aeon_repository_quota_bytes",
                "The repository's quota in bytes.",
                &r,
                limit as f64,
            );
            self.sample(
                "aeon_repository_quota_used_ratio",
                "Share of the quota in use (0 to 1).",
                &r,
                if limit > 0 { size / limit as f64 } else { 0.0 },
            );
        }
        self.sample(
            "aeon_audit_log_intact",
            "1 if the audit log verifies, else 0.",
            &r,
            flag(report.audit.intact),
        );
        self.sample(
            "aeon_audit_records",
            "Records in the audit log.",
            &r,
            report.audit.records as f64,
        );
        self.sample(
            "aeon_retention_adheres",
            "1 if the recovery points kept match the stored retention policies, else 0.",
            &r,
            flag(report.retention.adheres),
        );
        self.sample(
            "aeon_unreadable_points",
            "Recovery points that cannot be read.",
            &r,
            report.unreadable_points.len() as f64,
        );
        if let Some(check) = &report.verification.last_check {
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&check.time) {
                self.sample(
                    "aeon_last_check_timestamp_seconds",
                    "When the last check ran (Unix time).",
                    &r,
                    t.timestamp() as f64,
                );
            }
            self.sample(
                "aeon_last_check_success",
                "1 if the last check found no damage, else 0.",
                &r,
                flag(check.outcome == "ok"),
            );
        }
        if let Some(coverage) = report.verification.scrub_coverage_percent {
            self.sample(
                "aeon_scrub_coverage_ratio",
                "Share of the data the current scrub pass has read (0 to 1).",
                &r,
                coverage / 100.0,
            );
        }
        let now = report.generated.timestamp() as f64;
        for s in &report.sources {
            let paths = s.paths.join(",");
            let l =
                [("repository", repository), ("host", s.host.as_str()), ("paths", paths.as_str())];
            self.sample(
                "aeon_points",
                "Recovery points of the host and paths.",
                &l,
                s.points as f64,
            );
            self.sample(
                "aeon_protected_points",
                "Protected recovery points of the host and paths.",
                &l,
                s.protected_points as f64,
            );
            if let Some(last) = s.last_backup {
                let t = last.timestamp() as f64;
                self.sample(
                    "aeon_newest_point_timestamp_seconds",
                    "When the newest recovery point of the host and paths was taken (Unix time).",
                    &l,
                    t,
                );
                self.sample(
                    "aeon_newest_point_age_seconds",
                    "Age of the newest recovery point of the host and paths.",
                    &l,
                    (now - t).max(0.0),
                );
                self.sample(
                    "aeon_newest_point_errors",
                    "Files the newest recovery point could not read.",
                    &l,
                    s.last_backup_errors as f64,
                );
                self.sample(
                    "aeon_newest_point_bytes",
                    "Bytes of files in the newest recovery point.",
                    &l,
                    s.last_backup_bytes as f64,
                );
            }
        }
    }
}

/// A label value escaped as the exposition format wants (backslash, quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_written_once_with_escaped_labels() {
        let mut e = Exposition::default();
        e.sample("aeon_points", "Points.", &[("host", "a\"b\\c\nd")], 2.0);
        e.sample("aeon_points", "Points.", &[("host", "x")], 3.0);
        e.sample("aeon_job_success_total", "Runs.", &[], 1.0);
        let text = e.render();
        assert_eq!(text.matches("# TYPE aeon_points gauge").count(), 1);
        assert!(text.contains("aeon_points{host=\"a\\\"b\\\\c\\nd\"} 2"), "{text}");
        assert!(text.contains("# TYPE aeon_job_success_total counter"), "{text}");
    }
}
