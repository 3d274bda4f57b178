//! `chatmail-fsreport [ini] [options]`: storage and account statistics of the relay.

use std::path::PathBuf;

use chatmaild::fsreport::{DEFAULT_LEGACY_METRICS, Filter, Report, write_metrics};
use clap::Parser;

/// Report accounts (mailboxes with a password file), logins and storage of the relay's
/// mailboxes.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The relay's chatmail.ini.
    #[arg(default_value = chatmaild::DEFAULT_INI)]
    ini: PathBuf,
    /// Pretend today is this many days earlier.
    #[arg(long, default_value_t = 0)]
    days: i64,
    /// Sum message sizes only of accounts whose last login is at least this many days ago
    /// (the storage totals always count every mailbox).
    #[arg(long, default_value_t = 0)]
    min_login_age: i64,
    /// Sum message sizes only of the mailboxes' top folder of this name.
    #[arg(long, value_parser = ["cur", "new", "tmp"])]
    mdir: Option<String>,
    /// Look at no more than this many mailboxes.
    #[arg(long)]
    maxnum: Option<usize>,
    /// Write Prometheus gauges to this file (a folder gets fsreport.prom).
    #[arg(long)]
    textfile: Option<PathBuf>,
    /// Write upstream's legacy account gauges to this file.
    #[arg(long, num_args = 0..=1, default_missing_value = DEFAULT_LEGACY_METRICS)]
    legacy_metrics: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = chatmaild::load_config(&args.ini)?;
    let now = chatmaild::unix_now() - args.days * chatmaild::files::DAY;
    let filter = Filter {
        min_login_age_days: args.min_login_age,
        mdir: args.mdir,
    };
    let report = Report::collect(&config.mailboxes_dir, args.maxnum, now, &filter)?;
    if let Some(path) = &args.textfile {
        write_metrics(path, &report.prometheus())?;
    }
    if let Some(path) = &args.legacy_metrics {
        write_metrics(path, &report.legacy_metrics())?;
    }
    if args.textfile.is_none() && args.legacy_metrics.is_none() {
        print!("{}", report.summary());
    }
    Ok(())
}
