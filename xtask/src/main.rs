//! `cargo xtask`: developer tasks that need more than `cargo test`: the cached Debian rootfs
//! the slow tests deploy into, and the deploy benchmarks.

mod bench;
mod demo;

use anyhow::{Result, bail};
use xtask::rootfs;

const HELP: &str = "\
usage: cargo xtask <task>

tasks:
  rootfs       build the cached Debian 12 rootfs tarballs for the slow tests (target/rootfs/)
  bench        measure install (vs a bare apt-get install) and no-op re-run times
  demo         deploy a relay into a local test host booted with systemd-nspawn
  demo stop    stop that test host
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("rootfs") => {
            println!("{}", rootfs::ensure()?.display());
            println!("{}", rootfs::ensure_bootable()?.display());
            Ok(())
        }
        Some("bench") => bench::run(),
        Some("demo") => match args.get(1).map(String::as_str) {
            None => demo::start(),
            Some("stop") => demo::stop(),
            Some(other) => bail!("unknown demo action {other:?}; use `cargo xtask demo [stop]`"),
        },
        Some("help" | "--help" | "-h") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => bail!("unknown task {other:?}\n{HELP}"),
    }
}
