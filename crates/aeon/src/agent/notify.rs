//! Notifications of the agent: a JSON POST to a webhook (retried) and e-mail over SMTP, on a
//! failed or skipped run, on damage found by a check, on lateness (no successful backup for
//! longer than the profile's `max_age`) and, when asked, on success.

use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::config::Notify;

/// Attempts at a webhook (waiting 1 s, then 2 s, between them).
const WEBHOOK_ATTEMPTS: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(10);

/// What happened, as the webhook receives it (and the e-mail shows it).
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    /// `failure`, `damage`, `late` or `success`.
    pub event: &'static str,
    pub profile: String,
    pub job: String,
    pub repository: String,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub point: Option<String>,
    pub host: String,
    pub time: String,
}

/// Sends `notice` wherever `notify` says; returns what could not be delivered.
pub fn send(notify: &Notify, notice: &Notice) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(url) = &notify.webhook
        && let Err(e) = webhook(url.get_ref(), notice)
    {
        problems.push(format!("webhook {}: {e:#}", url.get_ref()));
    }
    if !notify.email.is_empty()
        && let Err(e) = email(notify, notice)
    {
        problems.push(format!("e-mail to {}: {e:#}", notify.email.join(", ")));
    }
    problems
}

fn webhook(url: &str, notice: &Notice) -> Result<()> {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(TIMEOUT)).build().into();
    let mut last = None;
    for attempt in 0..WEBHOOK_ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(1 << (attempt - 1)));
        }
        match agent.post(url).send_json(notice) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("not sent"), anyhow::Error::from))
        .with_context(|| format!("{WEBHOOK_ATTEMPTS} attempts failed"))
}

fn email(notify: &Notify, notice: &Notice) -> Result<()> {
    use lettre::{Message, SmtpTransport, Transport};
    let from = notify.email_from.clone().unwrap_or_else(|| format!("aeon@{}", notice.host));
    let mut message = Message::builder()
        .from(from.parse().with_context(|| format!("sender {from:?}"))?)
        .subject(format!(
            "[aeon] {} {}: {} ({})",
            notice.profile, notice.job, notice.event, notice.outcome
        ));
    for to in &notify.email {
        message = message.to(to.parse().with_context(|| format!("recipient {to:?}"))?);
    }
    let body = format!(
        "{} of profile {} on {}: {}\n\n{}\n",
        notice.job,
        notice.profile,
        notice.host,
        notice.outcome,
        serde_json::to_string_pretty(notice)?
    );
    let message = message.body(body)?;
    let server = notify.smtp.clone().unwrap_or_else(|| "127.0.0.1:25".to_string());
    let (host, port) = match server.rsplit_once(':') {
        Some((h, p)) => {
            (h.to_string(), p.parse().with_context(|| format!("SMTP port in {server:?}"))?)
        }
        None => (server.clone(), 25),
    };
    // Plain SMTP to the relay named (usually a local one, as cron mails go): no TLS here.
    let transport =
        SmtpTransport::builder_dangerous(host).port(port).timeout(Some(TIMEOUT)).build();
    transport.send(&message).with_context(|| format!("SMTP server {server}"))?;
    Ok(())
}
