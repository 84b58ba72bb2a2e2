//! Policies over synthetic timelines, against keep sets worked out by hand from the calendar.

use std::collections::BTreeSet;

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use chrono_tz::{America::New_York, Europe::Berlin};

use super::*;

fn t(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap()
}

/// One point per hour from `from` (inclusive) to `to` (exclusive), ids in time order.
fn hourly(from: &str, to: &str) -> Vec<Point> {
    let (mut at, end) = (t(from), t(to));
    let mut out = Vec::new();
    while at < end {
        let n = out.len() as u32;
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&n.to_be_bytes());
        out.push(Point { id: Id(id), time: at, tags: vec![], protected: false });
        at += TimeDelta::hours(1);
    }
    out
}

fn kept<Tz: TimeZone>(points: &[Point], policy: &RetentionPolicy, tz: &Tz) -> BTreeSet<String> {
    apply(points, policy, tz)
        .iter()
        .zip(points)
        .filter(|(v, _)| v.keep)
        .map(|(_, p)| p.time.with_timezone(&Utc).format("%Y-%m-%dT%H").to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn year() -> Vec<Point> {
    hourly("2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z")
}

#[test]
fn a_year_of_hourly_points_daily_weekly_monthly_yearly() {
    let points = year();
    assert_eq!(points.len(), 8760);
    let daily = RetentionPolicy { keep_daily: Some(3), ..Default::default() };
    assert_eq!(
        kept(&points, &daily, &Utc),
        set(&["2025-12-29T23", "2025-12-30T23", "2025-12-31T23"])
    );

    // ISO weeks: 29-31 December 2025 belong to week 1 of 2026; earlier weeks end on Sundays.
    let weekly = RetentionPolicy { keep_weekly: Some(3), ..Default::default() };
    assert_eq!(
        kept(&points, &weekly, &Utc),
        set(&["2025-12-21T23", "2025-12-28T23", "2025-12-31T23"])
    );

    let monthly = RetentionPolicy { keep_monthly: Some(12), ..Default::default() };
    let ends = [
        "01-31", "02-28", "03-31", "04-30", "05-31", "06-30", "07-31", "08-31", "09-30", "10-31",
        "11-30", "12-31",
    ];
    let expected: BTreeSet<String> = ends.iter().map(|d| format!("2025-{d}T23")).collect();
    assert_eq!(kept(&points, &monthly, &Utc), expected);

    // Only one year has points: keep-yearly 5 keeps one.
    let yearly = RetentionPolicy { keep_yearly: Some(5), ..Default::default() };
    assert_eq!(kept(&points, &yearly, &Utc), set(&["2025-12-31T23"]));
}

#[test]
fn last_hourly_within_and_union_with_reasons() {
    let points = year();
    let p = RetentionPolicy {
        keep_last: Some(2),
        keep_hourly: Some(3),
        keep_daily: Some(2),
        ..Default::default()
    };
    assert_eq!(
        kept(&points, &p, &Utc),
        set(&["2025-12-30T23", "2025-12-31T21", "2025-12-31T22", "2025-12-31T23"])
    );
    let verdicts = apply(&points, &p, &Utc);
    assert_eq!(verdicts.last().unwrap().reasons, vec!["last", "hourly", "daily"]);
    assert_eq!(verdicts[points.len() - 3].reasons, vec!["hourly"]);

    // Within 2 days of the newest point (31 Dec 23:00): from 29 Dec 23:00 on, 49 points.
    let within = RetentionPolicy { keep_within: Some("2d".parse().unwrap()), ..Default::default() };
    let k = kept(&points, &within, &Utc);
    assert_eq!(k.len(), 49);
    assert_eq!(k.first().unwrap(), "2025-12-29T23");

    // Within-daily 3d: the newest point of each day from 28 Dec 23:00 on: 28, 29, 30, 31 Dec.
    let wd =
        RetentionPolicy { keep_within_daily: Some("3d".parse().unwrap()), ..Default::default() };
    assert_eq!(
        kept(&points, &wd, &Utc),
        set(&["2025-12-28T23", "2025-12-29T23", "2025-12-30T23", "2025-12-31T23"])
    );

    // Within-monthly 1y: a point for each month in the year before the newest point.
    let wm =
        RetentionPolicy { keep_within_monthly: Some("1y".parse().unwrap()), ..Default::default() };
    assert_eq!(kept(&points, &wm, &Utc).len(), 12);
}

#[test]
fn tags_keep_points_carrying_every_listed_tag() {
    let mut points = hourly("2025-06-01T00:00:00Z", "2025-06-01T05:00:00Z");
    points[0].tags = vec!["db".into(), "monthly".into()];
    points[1].tags = vec!["db".into()];
    let p = RetentionPolicy { keep_tags: vec!["db,monthly".into()], ..Default::default() };
    assert_eq!(kept(&points, &p, &Utc), set(&["2025-06-01T00"]));
    let p = RetentionPolicy { keep_tags: vec!["db".into()], ..Default::default() };
    assert_eq!(kept(&points, &p, &Utc).len(), 2);
}

#[test]
fn ties_are_broken_by_id_whatever_the_input_order() {
    let when = t("2025-03-01T12:00:00Z");
    let a = Point { id: Id([1; 32]), time: when, tags: vec![], protected: false };
    let b = Point { id: Id([2; 32]), time: when, tags: vec![], protected: false };
    let p = RetentionPolicy { keep_last: Some(1), ..Default::default() };
    for order in [vec![a.clone(), b.clone()], vec![b.clone(), a.clone()]] {
        let v = apply(&order, &p, &Utc);
        let kept: Vec<Id> =
            order.iter().zip(&v).filter(|(_, v)| v.keep).map(|(p, _)| p.id).collect();
        assert_eq!(kept, vec![Id([1; 32])]);
    }
    let daily = RetentionPolicy { keep_daily: Some(5), ..Default::default() };
    let v = apply(&[b.clone(), a.clone()], &daily, &Utc);
    assert!(!v[0].keep && v[1].keep, "one point per day, the same one every time");
}

#[test]
fn days_follow_the_chosen_time_zone() {
    // Hourly points over 2 UTC days; New York is 5 hours behind in January.
    let points = hourly("2025-01-10T00:00:00Z", "2025-01-12T00:00:00Z");
    let p = RetentionPolicy { keep_daily: Some(10), ..Default::default() };
    assert_eq!(kept(&points, &p, &Utc), set(&["2025-01-10T23", "2025-01-11T23"]));
    // Local days: 9 Jan ends at 05:00Z, 10 Jan at 05:00Z on the 11th, 11 Jan (partial) last.
    assert_eq!(
        kept(&points, &p, &New_York),
        set(&["2025-01-10T04", "2025-01-11T04", "2025-01-11T23"])
    );
}

#[test]
fn daylight_saving_changes() {
    // Berlin, 26 Oct 2025: 03:00 CEST becomes 02:00 CET. 25 local hours that day.
    let points = hourly("2025-10-24T22:00:00Z", "2025-10-27T00:00:00Z");
    let daily = RetentionPolicy { keep_daily: Some(5), ..Default::default() };
    // Local days: 25 Oct ends 21:00Z (23:00 CEST); 26 Oct ends 22:00Z (23:00 CET); 27 Oct so far
    // has 23:00Z only (00:00 CET).
    assert_eq!(
        kept(&points, &daily, &Berlin),
        set(&["2025-10-25T21", "2025-10-26T22", "2025-10-26T23"])
    );
    // The repeated local hour 02:00 (00:00Z CEST and 01:00Z CET) is one hourly bucket: of its
    // two points only the newer is kept.
    let hourly_policy = RetentionPolicy { keep_hourly: Some(1000), ..Default::default() };
    let k = kept(&points, &hourly_policy, &Berlin);
    assert!(k.contains("2025-10-26T01") && !k.contains("2025-10-26T00"));
    assert_eq!(k.len(), points.len() - 1);

    // 30 Mar 2025: 02:00 CET becomes 03:00 CEST; that local day has 23 hourly points.
    let points = hourly("2025-03-29T23:00:00Z", "2025-03-30T22:00:00Z");
    assert_eq!(points.len(), 23);
    let k = kept(&points, &daily, &Berlin);
    assert_eq!(k, set(&["2025-03-30T21"]));
    assert_eq!(kept(&points, &hourly_policy, &Berlin).len(), 23);
}

#[test]
fn max_points_respects_protection() {
    let mut points = hourly("2025-01-01T00:00:00Z", "2025-01-01T10:00:00Z");
    points[0].protected = true;
    points[1].protected = true;
    let p = RetentionPolicy { keep_last: Some(10), max_points: Some(3), ..Default::default() };
    assert_eq!(kept(&points, &p, &Utc), set(&["2025-01-01T00", "2025-01-01T01", "2025-01-01T09"]));
    // More protected points than the maximum: all protected stay, nothing else does.
    for p in points.iter_mut().take(5) {
        p.protected = true;
    }
    assert_eq!(kept(&points, &p, &Utc).len(), 5);
    // max-points alone keeps the newest N.
    let only_max = RetentionPolicy { max_points: Some(4), ..Default::default() };
    for p in points.iter_mut() {
        p.protected = false;
    }
    assert_eq!(
        kept(&points, &only_max, &Utc),
        set(&["2025-01-01T06", "2025-01-01T07", "2025-01-01T08", "2025-01-01T09"])
    );
    // A protected point survives a policy that keeps nothing else.
    points[3].protected = true;
    let v = apply(&points, &RetentionPolicy { keep_last: Some(1), ..Default::default() }, &Utc);
    assert!(v[3].keep && v[3].reasons == vec!["protected"]);
}

#[test]
fn spans_parse_and_print() {
    let s: Span = "1y6m2w3d4h".parse().unwrap();
    assert_eq!(s, Span { years: 1, months: 6, days: 17, hours: 4 });
    assert_eq!(s.to_string(), "1y6m17d4h");
    assert!("7".parse::<Span>().is_err());
    assert!("7x".parse::<Span>().is_err());
    assert!("".parse::<Span>().is_err());
    // A month before 31 March is the last day of February.
    let back = Span { months: 1, ..Default::default() }.before(&t("2025-03-31T10:00:00Z"));
    assert_eq!(back, t("2025-02-28T10:00:00Z"));
    assert!(RetentionPolicy::default().validate().is_err());
}

#[test]
fn groups_and_per_category_policies() {
    use crate::snapshot::Snapshot;
    let entry = |n: u8, host: &str, category: Option<&str>, hour: u32| {
        let mut snapshot = Snapshot::sample(&format!("2025-05-01T{hour:02}:00:00Z"));
        snapshot.paths = vec!["/data".into()];
        snapshot.hostname = host.into();
        snapshot.category = category.map(String::from);
        SnapshotEntry { id: Id([n; 32]), snapshot }
    };
    let entries = vec![
        entry(1, "a", Some("critical"), 1),
        entry(2, "a", Some("critical"), 2),
        entry(3, "a", Some("critical"), 3),
        entry(4, "a", Some("incremental"), 4),
        entry(5, "a", Some("incremental"), 5),
        entry(6, "b", None, 6),
        entry(7, "b", None, 7),
    ];
    let given = PolicySource::Given(RetentionPolicy { keep_last: Some(1), ..Default::default() });
    let groups = plan(entries.clone(), &given, GroupBy::default(), &Utc).unwrap();
    assert_eq!(groups.len(), 2, "host a and host b");
    let kept: Vec<u8> = groups
        .iter()
        .flat_map(|g| g.points.iter().filter(|(_, v)| v.keep).map(|(e, _)| e.id.0[0]))
        .collect();
    assert_eq!(kept, vec![5, 7]);

    let mut map = BTreeMap::new();
    map.insert(
        "critical".to_string(),
        RetentionPolicy { keep_last: Some(3), ..Default::default() },
    );
    map.insert(
        "incremental".to_string(),
        RetentionPolicy { keep_last: Some(1), ..Default::default() },
    );
    let groups = plan(entries, &PolicySource::PerCategory(map), GroupBy::default(), &Utc).unwrap();
    let mut kept: Vec<u8> = groups
        .iter()
        .flat_map(|g| g.points.iter().filter(|(_, v)| v.keep).map(|(e, _)| e.id.0[0]))
        .collect();
    kept.sort();
    // Critical: all three; incremental: the newest; host b has no category policy: all kept.
    assert_eq!(kept, vec![1, 2, 3, 5, 6, 7]);
}
