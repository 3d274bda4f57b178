//! `cmdeploy bench`: what a user waits for, timed over several rounds against the live relay:
//! an IMAP login (TCP, TLS, LOGIN), an SMTP login (TCP, TLS, EHLO, AUTH), submitting an
//! encrypted message (connection and login included, as a client that sends once does), and
//! its arrival: from the end of the submission until the recipient's IDLE connection sees it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::checks::{DELIVERY_WAIT, Probe};
use crate::{Relay, message, smtp};

/// The samples of one measurement.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: &'static str,
    pub samples: Vec<Duration>,
}

impl Series {
    fn new(name: &'static str) -> Series {
        Series {
            name,
            samples: Vec::new(),
        }
    }

    /// The median (the lower middle one for an even count), minimum and maximum.
    pub fn stats(&self) -> Option<(Duration, Duration, Duration)> {
        let mut sorted = self.samples.clone();
        sorted.sort();
        let median = *sorted.get((sorted.len().checked_sub(1)?) / 2)?;
        Some((median, *sorted.first()?, *sorted.last()?))
    }
}

/// Runs `rounds` rounds, telling `progress` after each.
pub fn run(relay: Relay, rounds: usize, mut progress: impl FnMut(usize)) -> Result<Vec<Series>> {
    if rounds == 0 {
        bail!("at least one round");
    }
    let probe = Probe::new(relay)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut imap_login = Series::new("imap login");
        let mut smtp_login = Series::new("smtp login");
        let mut send = Series::new("send");
        let mut receive = Series::new("receive");
        let (bob, mut bob_imap) = probe.account().await?;
        let key = message::key(&bob.addr)?;
        for round in 0..rounds {
            // A new sender each round, so the relay's rate limit never counts.
            let (alice, alice_imap) = probe.account().await?;
            alice_imap.logout().await?;

            let start = Instant::now();
            let imap = probe.login(&alice).await?;
            imap_login.samples.push(start.elapsed());
            imap.logout().await?;

            let start = Instant::now();
            smtp::login(&probe.relay, &alice)
                .await
                .map_err(|err| anyhow::anyhow!("SMTP login as {}: {err}", alice.addr))?;
            smtp_login.samples.push(start.elapsed());

            let raw = message::encrypted(&alice.addr, &bob.addr, &key, &message::token())?;
            let start = Instant::now();
            smtp::submit(&probe.relay, &alice, &alice.addr, &bob.addr, &raw)
                .await
                .map_err(|err| anyhow::anyhow!("submitting as {}: {err}", alice.addr))?;
            let sent = Instant::now();
            send.samples.push(sent - start);
            let known = u32::try_from(round)?;
            let (_, seen) = bob_imap.wait_for_message(DELIVERY_WAIT, known).await?;
            receive.samples.push(seen.saturating_duration_since(sent));
            progress(round + 1);
        }
        bob_imap.logout().await?;
        Ok(vec![imap_login, smtp_login, send, receive])
    })
}

/// The results as a table in milliseconds.
pub fn table(series: &[Series]) -> String {
    let mut out = format!(
        "{:12}  {:>6}  {:>9}  {:>9}  {:>9}\n",
        "", "rounds", "median", "min", "max"
    );
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    for one in series {
        if let Some((median, min, max)) = one.stats() {
            out += &format!(
                "{:12}  {:>6}  {:>9}  {:>9}  {:>9}\n",
                one.name,
                one.samples.len(),
                ms(median),
                ms(min),
                ms(max)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_median_min_max() {
        let series = Series {
            name: "x",
            samples: [30, 10, 20, 50].map(Duration::from_millis).to_vec(),
        };
        let (median, min, max) = series.stats().unwrap();
        assert_eq!(
            (median, min, max),
            (
                Duration::from_millis(20),
                Duration::from_millis(10),
                Duration::from_millis(50)
            )
        );
        assert!(Series::new("empty").stats().is_none());
    }
}
