//! `doveauth <socket> <ini>`: Dovecot's passdb/userdb dict service, creating accounts on
//! first login.

use std::path::PathBuf;

use chatmaild::doveauth::{DEFAULT_NOCREATE, Doveauth};
use clap::Parser;

/// Serve Dovecot's passdb and userdb over the dict protocol, creating accounts on first login.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Unix socket to listen on (a stale one is replaced).
    socket: PathBuf,
    /// The relay's chatmail.ini.
    ini: PathBuf,
    /// While this file exists, no account is created.
    #[arg(long, default_value = DEFAULT_NOCREATE)]
    nocreate_file: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = chatmaild::load_config(&args.ini)?;
    chatmaild::dict::run_service(&args.socket, Doveauth::new(config, args.nocreate_file))
}
