//! `chatmail-expire [ini] [--days N] [--maxnum N] [-v] [--remove]`: daily mailbox expiry.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use chatmaild::expire::Expiry;
use clap::Parser;

/// Remove inactive accounts, expired messages and over-quota mail. Without --remove this
/// is a dry run that only counts.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The relay's chatmail.ini.
    #[arg(default_value = chatmaild::DEFAULT_INI)]
    ini: PathBuf,
    /// Pretend today is this many days earlier.
    #[arg(long, default_value_t = 0)]
    days: i64,
    /// Look at no more than this many mailboxes.
    #[arg(long)]
    maxnum: Option<usize>,
    /// Print every removal.
    #[arg(short, long)]
    verbose: bool,
    /// Really remove (otherwise a dry run).
    #[arg(long)]
    remove: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = chatmaild::load_config(&args.ini)?;
    if !config.mailboxes_dir.is_dir() {
        println!("no mailboxes found in {}", config.mailboxes_dir.display());
        return Ok(());
    }
    let started = Instant::now();
    let now = chatmaild::unix_now() - args.days * chatmaild::files::DAY;
    let expiry = Expiry::new(&config, now, args.remove, args.verbose);
    let mut stdout = std::io::stdout().lock();
    let summary = expiry
        .run(&config.mailboxes_dir, args.maxnum, &mut stdout)
        .with_context(|| format!("expiring mailboxes in {}", config.mailboxes_dir.display()))?;
    println!(
        "Removed {} out of {} mailboxes and {} out of {} files in existing mailboxes in {:.2} seconds{}",
        summary.removed_mailboxes,
        summary.mailboxes,
        summary.removed_files,
        summary.files,
        started.elapsed().as_secs_f64(),
        if args.remove {
            ""
        } else {
            " (dry run: nothing was removed, use --remove)"
        }
    );
    Ok(())
}
