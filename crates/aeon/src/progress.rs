//! Progress bars on a terminal; nothing when stderr is not one or with --quiet.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Bar {
    bar: ProgressBar,
    files: AtomicU64,
    total_files: AtomicU64,
    noun: &'static str,
}

impl Bar {
    pub fn new(visible: bool, noun: &'static str) -> Bar {
        let bar = if visible && std::io::stderr().is_terminal() {
            let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(8));
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
                )
                .expect("valid template"),
            );
            b.enable_steady_tick(Duration::from_millis(250));
            b
        } else {
            ProgressBar::hidden()
        };
        Bar { bar, files: AtomicU64::new(0), total_files: AtomicU64::new(0), noun }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl aeon_core::progress::Progress for Bar {
    fn set_total(&self, files: u64, bytes: u64) {
        self.total_files.store(files, Ordering::Relaxed);
        self.bar.set_length(bytes);
    }

    fn add(&self, files: u64, bytes: u64) {
        // A hidden bar draws nothing, and keeping its count and message was 5% of the walk of
        // a backup with nothing changed.
        if self.bar.is_hidden() {
            return;
        }
        if bytes > 0 {
            self.bar.inc(bytes);
        }
        if files > 0 {
            let done = self.files.fetch_add(files, Ordering::Relaxed) + files;
            let total = self.total_files.load(Ordering::Relaxed);
            if total > 0 {
                self.bar.set_message(format!("{done}/{total} {}", self.noun));
            } else {
                self.bar.set_message(format!("{done} {}", self.noun));
            }
        }
    }

    fn notice(&self, notice: &aeon_core::progress::Notice) {
        self.bar.suspend(|| eprintln!("{notice}"));
    }
}

/// Prints the engine's notices (warnings, notes) to stderr, one line each: stdout stays for
/// output. With `--json` each is a JSON object (`{"level": "warning", "message": "…"}`).
pub struct Notices {
    pub json: bool,
    /// `-v`: print the audit log's head after each record.
    pub verbose: bool,
}

/// The audit log's head after this process's last record (for `--json` output).
static AUDIT_HEAD: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

pub fn audit_head() -> Option<String> {
    AUDIT_HEAD.lock().ok().and_then(|h| h.clone())
}

pub fn record_audit_head(head: &str) {
    if let Ok(mut h) = AUDIT_HEAD.lock() {
        *h = Some(head.to_string());
    }
}

impl aeon_core::progress::Progress for Notices {
    fn notice(&self, notice: &aeon_core::progress::Notice) {
        match self.json {
            true => eprintln!("{}", serde_json::json!(notice)),
            false => eprintln!("{notice}"),
        }
    }

    fn audit_recorded(&self, head: &str) {
        record_audit_head(head);
        if self.verbose && !self.json {
            eprintln!("audit head: {head}");
        }
    }
}

pub fn bytes(n: u64) -> String {
    HumanBytes(n).to_string()
}
