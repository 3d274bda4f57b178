//! `chatmail-metadata <socket> <ini>`: the IMAP METADATA dict service and push notifier.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use chatmaild::metadata::{DEFAULT_APPVERSIONS, Metadata};
use chatmaild::notifier::{self, Notifier};
use clap::Parser;

/// Serve Dovecot's IMAP METADATA dict (device tokens, Delta Chat server keys) and deliver
/// push notifications for new messages.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Unix socket to listen on (a stale one is replaced).
    socket: PathBuf,
    /// The relay's chatmail.ini.
    ini: PathBuf,
    /// Where notifications are POSTed.
    #[arg(long, env = "CHATMAIL_NOTIFY_URL", default_value = notifier::DEFAULT_ENDPOINT)]
    notify_url: String,
    /// The JSON served as the `appversions` server key.
    #[arg(long, default_value = DEFAULT_APPVERSIONS)]
    appversions: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = chatmaild::load_config(&args.ini)?;
    if !config.mailboxes_dir.is_dir() {
        bail!(
            "mailboxes_dir {} does not exist",
            config.mailboxes_dir.display()
        );
    }
    let config = Arc::new(config);
    let notifier = Notifier::start(
        Arc::clone(&config),
        notifier::Settings::new(&args.notify_url),
    )?;
    let handler = Metadata::new(config, notifier, args.appversions);
    chatmaild::dict::run_service(&args.socket, handler)
}
