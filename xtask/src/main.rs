//! `cargo xtask`: developer tasks that need more than `cargo test`: the cached Debian rootfs
//! the slow tests deploy into, and the deploy benchmarks.

mod bench;
mod bench_latency;
mod demo;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use xtask::{dovecot, image, iroh_relay, rootfs};

/// Developer tasks that need more than `cargo test`.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Build the cached Debian 12 rootfs tarballs the slow tests deploy into (target/rootfs/).
    Rootfs,
    /// Build (or find cached) the delay-free Dovecot packages from Debian's source with
    /// xtask/dovecot/*.patch, and print their directory (under $CMDEPLOY_CACHE, default
    /// /var/cache/cmdeploy).
    Dovecot,
    /// Build (or find cached) the iroh relay server from crates.io at upstream's pinned version
    /// (under $CMDEPLOY_CACHE) and copy it beside cmdeploy (target/debug, target/release), so
    /// deploys, bundles and images carry it. The first build takes minutes.
    IrohRelay,
    /// Measure deploys: install time (against a bare apt-get install) and the no-op re-run.
    Bench {
        /// `latency`: message latency through a booted test relay (submission -> IMAP IDLE,
        /// Delta Chat round trip, per hop) and Dovecot's stop time, with Debian's Dovecot and
        /// with ours. `host`: only the deploys in a booted test host (first run, no-op,
        /// `--only postfix`).
        #[arg(value_parser = ["latency", "host"])]
        mode: Option<String>,
        /// With 2: Delta Chat round trips between the two relays of the testbed and within one.
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2), conflicts_with = "mode")]
        relays: Option<u8>,
    },
    /// Deploy a relay into a local test host booted with systemd-nspawn and print how to
    /// reach it; `demo stop` stops it.
    Demo {
        /// `stop`: stop the demo's test host(s).
        #[arg(value_parser = ["stop"])]
        action: Option<String>,
        /// With 2: the two-relay testbed, _alpha.chat.test (self-signed) and beta.chat.test
        /// (certificate from a test CA) on hosts joined by a bridge, with nsd serving their
        /// zones.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
        relays: u8,
    },
    /// Build the relay's container image.
    Image {
        /// docker or podman (default: whichever is installed).
        #[arg(long)]
        engine: Option<String>,
        /// The Debian 12 base image; when it is the default and the engine lacks it, the cached
        /// Debian 12 rootfs (target/rootfs/) is imported as localhost/cmdeploy-debian:bookworm.
        #[arg(long, default_value = image::DEFAULT_BASE)]
        base: String,
        /// The image's tag.
        #[arg(long, default_value = image::DEFAULT_TAG)]
        tag: String,
        /// A directory holding cmdeploy and the relay's programs (default: build them in
        /// release mode).
        #[arg(long, value_name = "DIR")]
        binaries: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Rootfs => {
            println!("{}", rootfs::ensure()?.display());
            println!("{}", rootfs::ensure_bootable()?.display());
            Ok(())
        }
        Task::Dovecot => {
            println!("{}", dovecot::ensure()?.display());
            Ok(())
        }
        Task::IrohRelay => {
            for dir in iroh_relay::profile_dirs() {
                println!("{}", iroh_relay::copy_to(&dir)?.display());
            }
            Ok(())
        }
        Task::Bench { mode, relays } => match (mode.as_deref(), relays) {
            (Some("host"), _) => bench::host(),
            (Some(_), _) => bench_latency::run(),
            (None, Some(2)) => bench::relays(),
            (None, _) => bench::run(),
        },
        Task::Demo { action, relays } => match (action.as_deref(), relays) {
            (Some(_), _) => demo::stop(),
            (None, 2) => demo::start_two(),
            (None, _) => demo::start(),
        },
        Task::Image {
            engine,
            base,
            tag,
            binaries,
        } => {
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
    }
}
