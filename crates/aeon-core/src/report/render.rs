//! The compliance report as Markdown, a self-contained HTML page (no server, no scripts, no
//! external files) or JSON.

use std::fmt::Write as _;

use super::ComplianceReport;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Html,
    Json,
}

impl std::str::FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Format> {
        match s {
            "md" | "markdown" => Ok(Format::Markdown),
            "html" => Ok(Format::Html),
            "json" => Ok(Format::Json),
            other => Err(Error::InvalidInput(format!(
                "report format {other:?} is not known: use md, html or json"
            ))),
        }
    }
}

/// One section of the report: a title and a table.
struct Table {
    title: &'static str,
    note: Option<String>,
    head: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

fn tables(r: &ComplianceReport) -> Vec<Table> {
    let hours = |h: Option<f64>| h.map_or("-".into(), |h| format!("{h:.1} h"));
    let time = |t: Option<chrono::DateTime<chrono::FixedOffset>>| {
        t.map_or("never".to_string(), |t| t.format("%Y-%m-%d %H:%M %:z").to_string())
    };
    let mut out = vec![Table {
        title: "Repository",
        note: None,
        head: vec!["id", "location", "format", "created", "parity", "locations"],
        rows: vec![vec![
            r.repository.id[..16].to_string(),
            r.repository.location.clone(),
            r.repository.format_version.to_string(),
            time(Some(r.repository.created)),
            r.repository.parity.clone().unwrap_or_else(|| "off".into()),
            r.repository.locations.len().max(1).to_string(),
        ]],
    }];
    out.push(Table {
        title: "What is protected",
        note: (!r.unreadable_points.is_empty())
            .then(|| format!("Unreadable recovery points: {}", r.unreadable_points.join("; "))),
        head: vec![
            "host",
            "paths",
            "points",
            "protected",
            "last backup",
            "age",
            "last point",
            "unread files",
        ],
        rows: r
            .sources
            .iter()
            .map(|s| {
                vec![
                    s.host.clone(),
                    s.paths.join(", "),
                    s.points.to_string(),
                    s.protected_points.to_string(),
                    time(s.last_backup),
                    hours(s.last_backup_age_hours),
                    s.last_point.as_deref().map_or("-".into(), |p| p[..8].to_string()),
                    s.last_backup_errors.to_string(),
                ]
            })
            .collect(),
    });
    let mut policy_rows: Vec<Vec<String>> =
        r.retention.policies.iter().map(|(c, p)| vec![c.clone(), p.clone()]).collect();
    if policy_rows.is_empty() {
        policy_rows.push(vec!["-".into(), "no stored policy: every point is kept".into()]);
    }
    out.push(Table {
        title: "Retention",
        note: Some(if r.retention.adheres {
            "The points kept match the stored policies.".to_string()
        } else {
            format!(
                "{} point(s) are beyond the stored policies (run `aeon forget`): {}",
                r.retention.beyond_policy.len(),
                r.retention.beyond_policy.iter().map(|p| &p[..8]).collect::<Vec<_>>().join(", ")
            )
        }),
        head: vec!["category", "policy"],
        rows: policy_rows,
    });
    let v = &r.verification;
    let record = |c: &Option<super::CheckRecord>| match c {
        None => vec!["never".to_string(), "-".into(), "-".into()],
        Some(c) => vec![
            c.time.clone(),
            c.outcome.clone(),
            match c.seconds {
                Some(s) => format!("{} ({s:.1} s)", c.arguments.join(" ")),
                None => c.arguments.join(" "),
            },
        ],
    };
    let mut check_row = vec!["last check".to_string()];
    check_row.extend(record(&v.last_check));
    let mut restore_row = vec!["last restore".to_string()];
    restore_row.extend(record(&v.last_restore));
    let mut drill_row = vec!["last recovery drill".to_string()];
    drill_row.extend(record(&v.last_drill));
    if let Some(rate) = v.last_drill.as_ref().and_then(|d| d.figures.get("bytes_per_second"))
        && let Some(detail) = drill_row.last_mut()
    {
        detail.push_str(&format!(", {:.1} MiB/s", rate / (1024.0 * 1024.0)));
    }
    let scrub_row = vec![
        "rolling scrub".to_string(),
        time(v.scrub_pass_started),
        v.scrub_coverage_percent
            .map_or("no scrub yet".into(), |p| format!("{p:.1}% of data read this pass")),
        format!("last full pass: {}", time(v.last_full_scrub)),
    ];
    out.push(Table {
        title: "Verification",
        note: None,
        head: vec!["what", "when", "outcome", "detail"],
        rows: vec![check_row, restore_row, drill_row, scrub_row],
    });
    out.push(Table {
        title: "Protected recovery points",
        note: None,
        head: vec!["id", "time", "host", "paths"],
        rows: r
            .protected_points
            .iter()
            .map(|p| {
                vec![p.id[..8].to_string(), time(Some(p.time)), p.host.clone(), p.paths.join(", ")]
            })
            .collect(),
    });
    out.push(Table {
        title: "Key slots",
        note: None,
        head: vec!["id", "type", "access", "label", "created"],
        rows: r
            .key_slots
            .iter()
            .map(|k| {
                vec![
                    k.id[..16].to_string(),
                    k.slot_type.map_or("?".into(), |t| t.name().to_string()),
                    k.access.map_or("?".into(), |a| format!("{a:?}").to_lowercase()),
                    k.label.clone().or(k.error.clone()).unwrap_or_default(),
                    k.created.map_or("-".into(), |t| t.format("%Y-%m-%d").to_string()),
                ]
            })
            .collect(),
    });
    let q = &r.quota;
    out.push(Table {
        title: "Storage",
        note: None,
        head: vec!["used", "quota", "used of quota"],
        rows: vec![vec![
            human_bytes(q.used_bytes),
            q.limit_bytes.map_or("none".into(), human_bytes),
            q.used_percent.map_or("-".into(), |p| format!("{p:.1}%")),
        ]],
    });
    let a = &r.audit;
    let mut audit_rows = vec![vec![
        if a.intact { "intact".into() } else { "TAMPERED".into() },
        a.records.to_string(),
        a.heads.join(", "),
    ]];
    for p in &a.problems {
        audit_rows.push(vec!["problem".into(), p.record.clone(), p.problem.clone()]);
    }
    out.push(Table {
        title: "Audit log",
        note: Some("Compare the head with one kept outside the repository: `aeon audit verify --head HASH`.".into()),
        head: vec!["state", "records", "head"],
        rows: audit_rows,
    });
    out
}

/// Bytes in binary units, as people read them.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

fn markdown_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The report in `format`.
pub fn render(r: &ComplianceReport, format: Format) -> Result<String> {
    let generated = r.generated.format("%Y-%m-%d %H:%M:%S %:z");
    let mut s = String::new();
    match format {
        Format::Json => {
            s = serde_json::to_string_pretty(r)
                .map_err(|e| Error::InvalidInput(format!("report: {e}")))?;
        }
        Format::Markdown => {
            let _ = writeln!(s, "# Aeon compliance report\n\nGenerated {generated}.\n");
            for t in tables(r) {
                let _ = writeln!(s, "## {}\n", t.title);
                if let Some(n) = &t.note {
                    let _ = writeln!(s, "{n}\n");
                }
                if t.rows.is_empty() {
                    let _ = writeln!(s, "None.\n");
                    continue;
                }
                let _ = writeln!(s, "| {} |", t.head.join(" | "));
                let _ = writeln!(s, "|{}", "---|".repeat(t.head.len()));
                for row in &t.rows {
                    let cells: Vec<String> = row.iter().map(|c| markdown_cell(c)).collect();
                    let _ = writeln!(s, "| {} |", cells.join(" | "));
                }
                s.push('\n');
            }
        }
        Format::Html => {
            let _ = write!(
                s,
                "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
                 <title>Aeon compliance report</title><style>\
                 body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}\
                 table{{border-collapse:collapse;margin-bottom:1.5em}}\
                 th,td{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}\
                 th{{background:#f2f2f2}}.bad{{color:#b00;font-weight:bold}}\
                 </style></head><body>\n<h1>Aeon compliance report</h1>\n<p>Generated {}.</p>\n",
                html_escape(&generated.to_string())
            );
            for t in tables(r) {
                let _ = writeln!(s, "<h2>{}</h2>", html_escape(t.title));
                if let Some(n) = &t.note {
                    let _ = writeln!(s, "<p>{}</p>", html_escape(n));
                }
                if t.rows.is_empty() {
                    let _ = writeln!(s, "<p>None.</p>");
                    continue;
                }
                s.push_str("<table><tr>");
                for h in &t.head {
                    let _ = write!(s, "<th>{}</th>", html_escape(h));
                }
                s.push_str("</tr>\n");
                for row in &t.rows {
                    s.push_str("<tr>");
                    for c in row {
                        let class = if c == "TAMPERED" { " class=\"bad\"" } else { "" };
                        let _ = write!(s, "<td{class}>{}</td>", html_escape(c));
                    }
                    s.push_str("</tr>\n");
                }
                s.push_str("</table>\n");
            }
            s.push_str("</body></html>\n");
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_what_storage_or_users_wrote() {
        assert_eq!(html_escape("<script>&\"'"), "&lt;script&gt;&amp;&quot;&#39;");
        assert_eq!(markdown_cell("a|b\nc"), "a\\|b c");
        assert!("pdf".parse::<Format>().is_err());
    }
}
