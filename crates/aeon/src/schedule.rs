//! When a profile runs: `every 6h` (an interval, counted from the last run) or a cron
//! expression of five fields (minute, hour, day of month, month, day of week; local time).

use std::time::Duration;

use anyhow::{Result, bail};
use chrono::{DateTime, Local};

#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    Cron(Box<croner::Cron>),
}

/// The shortest interval accepted: anything shorter is continuous protection (`watch`).
const MIN_INTERVAL: Duration = Duration::from_secs(60);

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule> {
        let text = text.trim();
        if let Some(every) = text.strip_prefix("every ") {
            let interval = crate::config::parse_duration(every.trim())?;
            if interval < MIN_INTERVAL {
                bail!(
                    "schedule {text:?}: at least every minute (for changes within seconds, use watch = true)"
                );
            }
            return Ok(Schedule::Every(interval));
        }
        if text.split_whitespace().count() != 5 {
            bail!(
                "schedule {text:?} is neither `every DURATION` (e.g. every 6h) nor a cron expression of 5 fields (e.g. \"0 */6 * * *\")"
            );
        }
        match text.parse::<croner::Cron>() {
            Ok(cron) => Ok(Schedule::Cron(Box::new(cron))),
            Err(e) => bail!("schedule {text:?}: {e}"),
        }
    }

    /// The first run due strictly after `after`, given the last run's start (`last`, if any).
    pub fn next_after(
        &self,
        after: DateTime<Local>,
        last: Option<DateTime<Local>>,
    ) -> DateTime<Local> {
        match self {
            Schedule::Every(interval) => {
                let interval =
                    chrono::Duration::from_std(*interval).unwrap_or(chrono::Duration::MAX);
                match last {
                    Some(last) if last + interval > after => last + interval,
                    // Never run, or overdue: now (a missed run is caught up once, not N times).
                    _ => after,
                }
            }
            Schedule::Cron(cron) => cron
                .find_next_occurrence(&after, false)
                .unwrap_or(after + chrono::Duration::days(366)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Local> {
        Local.with_ymd_and_hms(2026, 12, 7, h, m, 0).unwrap()
    }

    #[test]
    fn intervals_and_cron_expressions() {
        let every = Schedule::parse("every 6h").unwrap();
        assert_eq!(every.next_after(at(10, 0), Some(at(9, 0))), at(15, 0));
        assert_eq!(every.next_after(at(16, 0), Some(at(9, 0))), at(16, 0), "overdue: now");
        let cron = Schedule::parse("30 */4 * * *").unwrap();
        assert_eq!(cron.next_after(at(9, 0), None), at(12, 30));
        for bad in ["every 10s", "every banana", "0 0 * *", "61 * * * *", "daily"] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }
}
