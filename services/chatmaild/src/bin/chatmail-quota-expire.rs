//! `chatmail-quota-expire <target_mb> <mailbox_path>`: Dovecot's quota-warning script.

use std::path::PathBuf;

use clap::Parser;

/// Delete a mailbox's oldest messages (never those of the last 24 hours) until it holds at
/// most TARGET_MB megabytes.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The size to trim the mailbox to, in MiB.
    target_mb: u64,
    /// The mailbox folder (`<mailboxes_dir>/<address>`).
    mailbox_path: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let removed =
        chatmaild::expire::quota_expire(&args.mailbox_path, args.target_mb, chatmaild::unix_now())?;
    if removed > 0 {
        let name = args
            .mailbox_path
            .file_name()
            .unwrap_or(args.mailbox_path.as_os_str());
        eprintln!(
            "quota-expire: removed {removed} message(s) from {}",
            name.to_string_lossy()
        );
    }
    Ok(())
}
