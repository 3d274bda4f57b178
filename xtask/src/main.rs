//! `cargo xtask`: developer tasks that need more than `cargo test`: the cached Debian rootfs
//! the slow tests deploy into, and the deploy benchmarks.

mod bench;
mod bench_latency;
mod demo;

use anyhow::{Result, bail};
use xtask::{dovecot, image, rootfs};

const HELP: &str = "\
usage: cargo xtask <task>

tasks:
  rootfs       build the cached Debian 12 rootfs tarballs for the slow tests (target/rootfs/)
  dovecot      build (or find cached) the delay-free Dovecot packages from Debian's source
               with xtask/dovecot/*.patch; prints their directory (CMDEPLOY_CACHE, default
               /var/cache/cmdeploy)
  bench        measure install (vs a bare apt-get install) and no-op re-run times
  bench latency
               message latency through a booted test relay (submission -> IMAP IDLE, Delta
               Chat round trip, per hop), with Debian's Dovecot and with ours
  bench --relays 2
               Delta Chat round trips between the two relays of the testbed and within one
  demo         deploy a relay into a local test host booted with systemd-nspawn
  demo --relays 2
               the two-relay testbed: _alpha.chat.test (self-signed) and beta.chat.test
               (certificate from a test CA) on test hosts joined by a bridge, with nsd serving
               their zones; prints domains, addresses and shell lines
  demo stop    stop the demo's test host(s)
  image [--engine docker|podman] [--base IMAGE] [--tag TAG] [--binaries DIR]
               build the relay's container image (default base debian:bookworm, tag
               chatmail-relay:latest, release binaries built first unless --binaries)
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("rootfs") => {
            println!("{}", rootfs::ensure()?.display());
            println!("{}", rootfs::ensure_bootable()?.display());
            Ok(())
        }
        Some("dovecot") => {
            println!("{}", dovecot::ensure()?.display());
            Ok(())
        }
        Some("bench") => match args.get(1).map(String::as_str) {
            None => bench::run(),
            Some("latency") => bench_latency::run(),
            Some("--relays") if args.get(2).map(String::as_str) == Some("2") => bench::relays(),
            Some(other) => {
                bail!(
                    "unknown bench option {other:?}; use `cargo xtask bench [latency | --relays 2]`"
                )
            }
        },
        Some("image") => image(&args[1..]),
        Some("demo") => match args.get(1).map(String::as_str) {
            None => demo::start(),
            Some("stop") => demo::stop(),
            Some("--relays") => match args.get(2).map(String::as_str) {
                Some("1") => demo::start(),
                Some("2") => demo::start_two(),
                _ => bail!("--relays takes 1 or 2"),
            },
            Some(other) => {
                bail!("unknown demo action {other:?}; use `cargo xtask demo [--relays 2 | stop]`")
            }
        },
        Some("help" | "--help" | "-h") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => bail!("unknown task {other:?}\n{HELP}"),
    }
}

/// `cargo xtask image` with its options.
fn image(args: &[String]) -> Result<()> {
    let mut engine = None;
    let mut base = image::DEFAULT_BASE.to_owned();
    let mut tag = image::DEFAULT_TAG.to_owned();
    let mut binaries = None;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let Some(value) = rest.next() else {
            bail!("{flag} needs a value\n{HELP}");
        };
        match flag.as_str() {
            "--engine" => engine = Some(value.clone()),
            "--base" => base = value.clone(),
            "--tag" => tag = value.clone(),
            "--binaries" => binaries = Some(value.into()),
            other => bail!("unknown option {other:?}\n{HELP}"),
        }
    }
    let options = image::Options {
        engine: image::Engine::find(engine.as_deref())?,
        base,
        tag,
        binaries,
    };
    image::build(&options)?;
    println!("built {}", options.tag);
    Ok(())
}
