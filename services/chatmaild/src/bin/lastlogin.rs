//! `lastlogin <socket> <ini>`: the dict service behind Dovecot's `last_login` plugin.

use std::path::PathBuf;

use chatmaild::lastlogin::LastLogin;
use clap::Parser;

/// Record IMAP logins as the day-rounded mtime of each account's password file.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Unix socket to listen on (a stale one is replaced).
    socket: PathBuf,
    /// The relay's chatmail.ini.
    ini: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = chatmaild::load_config(&args.ini)?;
    chatmaild::dict::run_service(&args.socket, LastLogin::new(config))
}
