//! Load test of doveauth over its dict socket: lookups per second and latency percentiles
//! at several connection counts, first-login creation rate, and the server's peak memory.
//!
//! `cargo run --release -p chatmaild --example dict_bench -- --doveauth target/release/doveauth`
//!
//! Each connection sends `H3\t2\t0\t\tauth` once, then one lookup at a time, reading one
//! reply line each, as the design's load client does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const DOMAIN: &str = "bench.example.org";

/// Benchmark a doveauth binary.
#[derive(Debug, Parser)]
struct Args {
    /// The doveauth binary to start (build it with --release).
    #[arg(long)]
    doveauth: PathBuf,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Connection counts of the lookup runs.
    #[arg(long, value_delimiter = ',', default_value = "1,50,200")]
    clients: Vec<usize>,
    /// Existing accounts the lookups cycle through.
    #[arg(long, default_value_t = 1000)]
    accounts: usize,
    /// Threads of the load client.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
}

/// Which lookups a run sends.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// passdb lookups of accounts that exist.
    Existing(usize),
    /// passdb lookups of fresh addresses: each creates an account.
    Create,
}

struct Run {
    replies: usize,
    elapsed: Duration,
    /// Microseconds per reply, sorted.
    latencies: Vec<u64>,
}

impl Run {
    fn percentile(&self, p: f64) -> f64 {
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[i - 1] as f64 / 1000.0
    }

    fn rate(&self) -> f64 {
        self.replies as f64 / self.elapsed.as_secs_f64()
    }
}

fn passdb_line(local: &str) -> String {
    format!("Lshared/passdb/bench-password\"{local}@{DOMAIN}\t{local}@{DOMAIN}\n")
}

async fn client(
    socket: PathBuf,
    load: Load,
    id: usize,
    next: Arc<AtomicUsize>,
    until: Instant,
) -> Result<Vec<u64>> {
    let stream = UnixStream::connect(&socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    write.write_all(b"H3\t2\t0\t\tauth\n").await?;
    let mut latencies = Vec::new();
    let mut reply = String::new();
    let mut n = id;
    while Instant::now() < until {
        let local = match load {
            Load::Existing(accounts) => {
                n += 7919;
                format!("acc{:06}", n % accounts)
            }
            Load::Create => format!("new{:06}", next.fetch_add(1, Ordering::Relaxed)),
        };
        let line = passdb_line(&local);
        let start = Instant::now();
        write.write_all(line.as_bytes()).await?;
        reply.clear();
        reader.read_line(&mut reply).await?;
        latencies.push(start.elapsed().as_micros() as u64);
        if !reply.starts_with('O') {
            bail!("unexpected reply {reply:?} for {local}");
        }
    }
    Ok(latencies)
}

/// Runs `clients` connections for `seconds`; fresh addresses are numbered from `next`.
fn measure(
    runtime: &tokio::runtime::Runtime,
    socket: &Path,
    load: Load,
    clients: usize,
    seconds: u64,
    next: &Arc<AtomicUsize>,
) -> Result<Run> {
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let latencies = runtime.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|id| tokio::spawn(client(socket.to_owned(), load, id, next.clone(), until)))
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.context("load client task")??);
        }
        anyhow::Ok(all)
    })?;
    let elapsed = start.elapsed();
    let mut latencies = latencies;
    latencies.sort_unstable();
    Ok(Run {
        replies: latencies.len(),
        elapsed,
        latencies,
    })
}

/// CPU seconds (user + system) the process has used so far, from `/proc/<pid>/stat`.
fn cpu_seconds(child: &Child) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id()))?;
    // Fields after the command name (which is in parentheses): utime and stime are the
    // 12th and 13th, in clock ticks of 1/100 s.
    let after_name = stat
        .rsplit_once(") ")
        .context("unexpected /proc/<pid>/stat")?
        .1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11).zip(fields.get(12)).map_or(Ok(0), |(u, s)| {
        anyhow::Ok(u.parse::<u64>()? + s.parse::<u64>()?)
    })?;
    Ok(ticks as f64 / 100.0)
}

/// The server's peak resident memory in KiB (`VmHWM`).
fn peak_rss_kib(child: &Child) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/<pid>/status")
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let ini = dir.path().join("chatmail.ini");
    // The load limit is lifted: the benchmark itself loads the machine.
    std::fs::write(
        &ini,
        format!(
            "[params]\nmail_domain = {DOMAIN}\nmailboxes_dir = {}\nmax_load_1m = 100000\n",
            dir.path().join("mail").display()
        ),
    )?;
    let socket = dir.path().join("doveauth.socket");
    let mut server = Command::new(&args.doveauth)
        .arg(&socket)
        .arg(&ini)
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", args.doveauth.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if Instant::now() > deadline {
            bail!("doveauth did not listen on {}", socket.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .enable_all()
        .build()?;

    println!("| load | connections | replies/s | p50 ms | p99 ms | server CPU µs/reply |");
    println!("|---|---|---|---|---|---|");
    let report = |what: &str, clients: usize, run: &Run, cpu: f64| {
        println!(
            "| {what} | {clients} | {:.0} | {:.3} | {:.3} | {:.1} |",
            run.rate(),
            run.percentile(0.50),
            run.percentile(0.99),
            cpu * 1e6 / run.replies as f64
        );
    };
    // Create the accounts the lookups use, measuring first-login creation on the way.
    let creations = runtime.block_on(async {
        let tasks: Vec<_> = (0..50)
            .map(|c| {
                let socket = socket.clone();
                let accounts = args.accounts;
                tokio::spawn(async move {
                    let stream = UnixStream::connect(&socket).await?;
                    let (read, mut write) = stream.into_split();
                    let mut reader = BufReader::new(read);
                    let mut reply = String::new();
                    for n in (c..accounts).step_by(50) {
                        write
                            .write_all(passdb_line(&format!("acc{n:06}")).as_bytes())
                            .await?;
                        reply.clear();
                        reader.read_line(&mut reply).await?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        anyhow::Ok(())
    });
    creations?;
    let fresh = Arc::new(AtomicUsize::new(0));
    for clients in [1, 50, 200] {
        let cpu = cpu_seconds(&server)?;
        let run = measure(
            &runtime,
            &socket,
            Load::Create,
            clients,
            args.seconds,
            &fresh,
        )?;
        report(
            "first-login creation",
            clients,
            &run,
            cpu_seconds(&server)? - cpu,
        );
    }
    for &clients in &args.clients {
        let cpu = cpu_seconds(&server)?;
        let run = measure(
            &runtime,
            &socket,
            Load::Existing(args.accounts),
            clients,
            args.seconds,
            &fresh,
        )?;
        report(
            "lookup of existing account",
            clients,
            &run,
            cpu_seconds(&server)? - cpu,
        );
    }
    println!(
        "\npeak RSS of doveauth (VmHWM): {:.1} MiB",
        peak_rss_kib(&server)? as f64 / 1024.0
    );
    server.kill()?;
    server.wait()?;
    Ok(())
}
