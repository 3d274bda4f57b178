//! How soon a relay tells an IMAP IDLE client about a new message: runs
//! `cli/tests/e2e/idle_latency.py` (encrypted submissions on 465, one IDLE recipient) with the
//! Python of the Delta Chat venv (`target/venv`) and reads its report.

use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::workspace;

/// One submitted message: its Message-ID and wall-clock times in Unix seconds.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub id: String,
    /// Submission began.
    pub sent: f64,
    /// The relay accepted it (the reply to DATA).
    pub accepted: f64,
    /// The recipient's IDLE connection got `* N EXISTS` for it.
    pub seen: f64,
}

/// The script's report.
#[derive(Debug, Clone, Deserialize)]
pub struct Report {
    pub messages: Vec<Message>,
    /// Messages in the recipient's INBOX before the first one.
    pub inbox_before: u64,
    /// The recipient's address and password, to measure the same mailbox again.
    pub recipient: (String, String),
}

impl Report {
    /// Accepted -> `EXISTS` of each message, in milliseconds, sorted.
    pub fn latencies_ms(&self) -> Vec<f64> {
        let mut all: Vec<f64> = self
            .messages
            .iter()
            .map(|m| (m.seen - m.accepted) * 1000.0)
            .collect();
        all.sort_by(f64::total_cmp);
        all
    }

    /// The median of [`Self::latencies_ms`].
    pub fn median_ms(&self) -> f64 {
        percentile(&self.latencies_ms(), 0.5)
    }

    /// The 99th percentile (nearest rank) of [`Self::latencies_ms`].
    pub fn p99_ms(&self) -> f64 {
        percentile(&self.latencies_ms(), 0.99)
    }
}

/// The value below which `fraction` of the sorted `values` lie (nearest rank).
pub fn percentile(values: &[f64], fraction: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let rank = (values.len() as f64 * fraction).ceil().max(1.0) as usize;
    values[rank.min(values.len()) - 1]
}

/// Sends `count` messages through the relay at `address` (mail domain `mail_domain`) to
/// `recipient`, a new account when `None`.
pub fn measure(
    address: &str,
    mail_domain: &str,
    count: usize,
    recipient: Option<&(String, String)>,
) -> Result<Report> {
    let python = workspace().join("target/venv/bin/python");
    let script = workspace().join("cli/tests/e2e/idle_latency.py");
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .args([address, mail_domain, &count.to_string()]);
    if let Some((addr, password)) = recipient {
        command.args([addr, password]);
    }
    let output = command
        .output()
        .with_context(|| format!("running {} (scripts/setup-debian)", python.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed:\n{}{}",
            script.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "reading the report of {}: {}",
            script.display(),
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_ranks() {
        let values: Vec<f64> = (1..=50).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), 25.0);
        assert_eq!(percentile(&values, 0.99), 50.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
    }
}
