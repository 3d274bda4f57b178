//! `cargo xtask bench latency`: how long a chat message takes through the relay, with Debian's
//! Dovecot and with our delay-free build, side by side on one booted test host (release
//! build). For each build: submission accepted (465) -> the recipient's IDLE `EXISTS` over
//! [`MESSAGES`] encrypted messages, the Delta Chat round trip, and each hop of the path from
//! the host's journal (Postfix, OpenDKIM and Dovecot log lines of the same messages); then
//! how long `systemctl stop dovecot` takes, with and without IMAP connections open.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use xtask::host::Host;
use xtask::latency::{self, Report, percentile};
use xtask::{bundle, check, dovecot, rootfs, workspace};

/// Messages per series.
const MESSAGES: usize = 60;
/// Delta Chat round trips per series (each with two new accounts).
const ROUND_TRIPS: usize = 3;
/// Timed stops per series, and the IMAP connections open during the second kind.
const STOPS: usize = 3;
const OPEN_CONNECTIONS: usize = 20;
/// How long Dovecot runs before a timed stop, once it answers: a stop right after the start
/// waits for the processes it is still starting (ten preforked login processes).
const RUNNING: Duration = Duration::from_secs(2);
const NET: u8 = 48;
const DOMAIN: &str = "_latency.example.org";
/// Where our packages are copied inside the host.
const HOST_DEBS: &str = "/root/dovecot-debs";

/// One hop: its name and the log events (or client times) it runs between.
struct Hop {
    name: &'static str,
    from: Event,
    to: Event,
}

/// A moment in a message's life.
#[derive(Clone, Copy)]
enum Event {
    /// The client began the submission.
    Sent,
    /// filtermail passed it on: Postfix's reinjection smtpd logs `QID: client=`.
    Reinjected,
    /// OpenDKIM logs `QID: DKIM-Signature field added`.
    Signed,
    /// Postfix's queue manager takes it (`QID: from=...`).
    Queued,
    /// Dovecot's LMTP logs `msgid=<...>: saved mail to INBOX`.
    Saved,
    /// Postfix's LMTP client logs `status=sent`.
    Delivered,
    /// The recipient's IDLE connection got `EXISTS`.
    Seen,
}

const HOPS: [Hop; 6] = [
    Hop {
        name: "submission (465) and filtermail's check, to reinjection",
        from: Event::Sent,
        to: Event::Reinjected,
    },
    Hop {
        name: "reinjection smtpd and OpenDKIM signing",
        from: Event::Reinjected,
        to: Event::Signed,
    },
    Hop {
        name: "cleanup, into Postfix's active queue",
        from: Event::Signed,
        to: Event::Queued,
    },
    Hop {
        name: "queue to Dovecot LMTP, saved",
        from: Event::Queued,
        to: Event::Saved,
    },
    Hop {
        name: "LMTP reply to Postfix",
        from: Event::Saved,
        to: Event::Delivered,
    },
    Hop {
        name: "Dovecot: saved to IDLE `EXISTS`",
        from: Event::Saved,
        to: Event::Seen,
    },
];

/// What one series measured.
struct Series {
    /// dovecot-core's version.
    version: String,
    report: Report,
    round_trips: Vec<f64>,
    /// Per hop of [`HOPS`], the milliseconds of each message that has both events.
    hops: Vec<Vec<f64>>,
    /// Seconds of each `systemctl stop dovecot`: with no client, and with
    /// [`OPEN_CONNECTIONS`] open.
    stops: Vec<f64>,
    stops_connected: Vec<f64>,
}

pub fn run() -> Result<()> {
    check(xtask::cargo().args(["build", "--release", "--quiet", "--workspace", "--bins"]))?;
    let cmdeploy = workspace().join("target/release/cmdeploy");
    let ours = dovecot::ensure()?;
    let root = rootfs::extract(
        &rootfs::ensure_bootable()?,
        &workspace().join("target/bench/latency"),
    )?;
    check(
        Command::new(&cmdeploy)
            .args(["run", "--phase", "install", "--root"])
            .arg(&root)
            .env(dovecot::DEBS_ENV, "debian")
            .stdout(std::process::Stdio::null()),
    )?;
    let host_debs = root.join(HOST_DEBS.trim_start_matches('/'));
    std::fs::create_dir_all(&host_debs)?;
    for entry in std::fs::read_dir(&ours)? {
        let path = entry?.path();
        std::fs::copy(
            &path,
            host_debs.join(path.file_name().context("a file name")?),
        )?;
    }
    bundle::copy(
        &cmdeploy,
        &root.join(bundle::HOST_DIR.trim_start_matches('/')),
    )?;
    // One sender submits every series: the send rate limit is raised out of the way.
    let config = format!(
        "[params]\nmail_domain = {DOMAIN}\nmax_load_1m = 1000\niroh_relay =\n\
         max_user_send_per_minute = 6000\nmax_user_send_burst_size = 1000\n"
    );
    std::fs::write(
        root.join(bundle::HOST_CONFIG.trim_start_matches('/')),
        config,
    )?;
    let host = Host::boot(&root, "cm-latency", NET)?;
    let version = || host.exec_ok(&["dpkg-query", "-W", "-f=${Version}", "dovecot-core"]);
    deploy(&host, "debian")?;
    let debian = series(&host, version()?)?;
    deploy(&host, HOST_DEBS)?;
    let delay_free = series(&host, version()?)?;
    print_table(&debian, &delay_free);
    Ok(())
}

/// `cmdeploy run` inside the host with the Dovecot build `choice`.
fn deploy(host: &Host, choice: &str) -> Result<()> {
    let setting = format!("{}={choice}", dovecot::DEBS_ENV);
    let mut argv = vec!["env".to_owned(), setting];
    argv.extend(bundle::host_run(&[]));
    host.exec_ok(&argv.iter().map(String::as_str).collect::<Vec<_>>())?;
    Ok(())
}

/// The IDLE series, the Delta Chat round trips and the hops of the series' messages.
fn series(host: &Host, version: String) -> Result<Series> {
    let address = host.address.to_string();
    // One message first: accounts and connections warm, then the measured series.
    let warm = latency::measure(&address, DOMAIN, 1, None)?;
    let report = latency::measure(&address, DOMAIN, MESSAGES, Some(&warm.recipient))?;
    let journal = journal(host, report.messages[0].sent - 1.0)?;
    let hops = HOPS
        .iter()
        .map(|hop| {
            report
                .messages
                .iter()
                .filter_map(|message| {
                    let from = when(&journal, message, hop.from)?;
                    let to = when(&journal, message, hop.to)?;
                    Some((to - from) * 1000.0)
                })
                .collect()
        })
        .collect();
    let round_trips = (0..ROUND_TRIPS)
        .map(|_| round_trip(&address))
        .collect::<Result<_>>()?;
    Ok(Series {
        version,
        report,
        round_trips,
        hops,
        stops: stop_times(host, 0)?,
        stops_connected: stop_times(host, OPEN_CONNECTIONS)?,
    })
}

/// Seconds `systemctl stop dovecot` takes, [`STOPS`] times, with `connections` IMAP
/// connections open during each stop (each waits in a login process); Dovecot is started
/// again after each.
fn stop_times(host: &Host, connections: usize) -> Result<Vec<f64>> {
    (0..STOPS)
        .map(|_| {
            drop(imap_connection(host.address)?);
            std::thread::sleep(RUNNING);
            let open = (0..connections)
                .map(|_| imap_connection(host.address))
                .collect::<Result<Vec<_>>>()?;
            let stopping = Instant::now();
            host.exec_ok(&["systemctl", "stop", "dovecot"])?;
            let took = stopping.elapsed().as_secs_f64();
            drop(open);
            host.exec_ok(&["systemctl", "start", "dovecot"])?;
            Ok(took)
        })
        .collect()
}

/// A connection to `address`'s IMAP port that got its greeting.
fn imap_connection(address: Ipv4Addr) -> Result<TcpStream> {
    let stream = TcpStream::connect((address, 143))
        .with_context(|| format!("connecting to {address}:143"))?;
    let mut greeting = String::new();
    BufReader::new(&stream)
        .read_line(&mut greeting)
        .context("reading the IMAP greeting")?;
    anyhow::ensure!(
        greeting.starts_with("* OK"),
        "IMAP greeting from {address}: {greeting:?}"
    );
    Ok(stream)
}

/// One journal line: when (Unix seconds), who (`postfix/lmtp`), and what.
struct Line {
    at: f64,
    ident: String,
    text: String,
}

/// The host's journal since `since` (Unix seconds).
fn journal(host: &Host, since: f64) -> Result<Vec<Line>> {
    let since = format!("--since=@{since:.0}");
    let text = host.exec_ok(&["journalctl", "-q", "--no-pager", "-o", "short-unix", &since])?;
    Ok(text.lines().filter_map(parse_line).collect())
}

/// `1733205600.123456 host ident[pid]: text`.
fn parse_line(line: &str) -> Option<Line> {
    let mut words = line.splitn(3, ' ');
    let at = words.next()?.parse().ok()?;
    let _host = words.next()?;
    let (ident, text) = words.next()?.split_once(": ")?;
    let ident = ident.split('[').next()?.to_owned();
    Some(Line {
        at,
        ident,
        text: text.to_owned(),
    })
}

/// When `event` happened to `message`, from the client's times or the journal.
fn when(journal: &[Line], message: &latency::Message, event: Event) -> Option<f64> {
    let message_id = format!("message-id=<{}>", message.id);
    let queue_id = || {
        journal
            .iter()
            .find(|line| line.ident.ends_with("/cleanup") && line.text.contains(&message_id))
            .and_then(|line| line.text.split_once(": "))
            .map(|(queue_id, _)| format!("{queue_id}: "))
    };
    let logged = |ident: &str, prefix: &str| -> Option<f64> {
        let start = format!("{}{prefix}", queue_id()?);
        journal
            .iter()
            .find(|line| line.ident == ident && line.text.starts_with(&start))
            .map(|line| line.at)
    };
    match event {
        Event::Sent => Some(message.sent),
        Event::Seen => Some(message.seen),
        Event::Reinjected => logged("postfix/reinject/smtpd", "client="),
        Event::Signed => logged("opendkim", "DKIM-Signature field added"),
        Event::Queued => logged("postfix/qmgr", "from="),
        Event::Delivered => {
            let start = queue_id()?;
            journal
                .iter()
                .find(|line| {
                    line.ident == "postfix/lmtp"
                        && line.text.starts_with(&start)
                        && line.text.contains("status=sent")
                })
                .map(|line| line.at)
        }
        Event::Saved => {
            let msgid = format!("msgid=<{}>: saved mail to", message.id);
            journal
                .iter()
                .find(|line| line.ident == "dovecot" && line.text.contains(&msgid))
                .map(|line| line.at)
        }
    }
}

/// One Delta Chat ping-pong between two new accounts, in seconds.
fn round_trip(address: &str) -> Result<f64> {
    let accounts = tempfile_dir()?;
    let output = crate::bench::delta_chat()
        .args([address, DOMAIN])
        .arg(accounts.join("accounts"))
        .output()
        .context("running deltachat_exchange.py")?;
    std::fs::remove_dir_all(&accounts)?;
    let report = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        anyhow::bail!(
            "deltachat_exchange.py failed: {report}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let value: serde_json::Value =
        serde_json::from_str(report.trim()).with_context(|| format!("reading {report}"))?;
    value["round_trip_seconds"]
        .as_f64()
        .with_context(|| format!("no round_trip_seconds in {report}"))
}

/// A fresh directory for one Delta Chat run's accounts.
fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = workspace().join("target/bench/deltachat");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 0.5)
}

/// Seconds as `median (min-max)`.
fn spread(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.2} s ({min:.2}-{max:.2})", median(values))
}

fn print_table(debian: &Series, ours: &Series) {
    println!(
        "| what | Debian's Dovecot {} | delay-free (ours) {} |",
        debian.version, ours.version
    );
    println!("|---|---|---|");
    let messages = debian.report.messages.len();
    println!(
        "| submission accepted -> IDLE `EXISTS`, median of {messages} | {:.1} ms | {:.1} ms |",
        debian.report.median_ms(),
        ours.report.median_ms()
    );
    println!(
        "| same, p99 | {:.1} ms | {:.1} ms |",
        debian.report.p99_ms(),
        ours.report.p99_ms()
    );
    println!(
        "| Delta Chat round trip (message and answer), median of {ROUND_TRIPS} | {:.2} s | {:.2} s |",
        median(&debian.round_trips),
        median(&ours.round_trips)
    );
    println!(
        "| `systemctl stop dovecot`, median (min-max) of {STOPS} | {} | {} |",
        spread(&debian.stops),
        spread(&ours.stops)
    );
    println!(
        "| same, with {OPEN_CONNECTIONS} IMAP connections open | {} | {} |",
        spread(&debian.stops_connected),
        spread(&ours.stops_connected)
    );
    for (index, hop) in HOPS.iter().enumerate() {
        let cell = |series: &Series| match series.hops[index].is_empty() {
            true => "not logged".to_owned(),
            false => format!(
                "{:.1} ms (n={})",
                median(&series.hops[index]),
                series.hops[index].len()
            ),
        };
        println!(
            "| hop: {}, median | {} | {} |",
            hop.name,
            cell(debian),
            cell(ours)
        );
    }
}
