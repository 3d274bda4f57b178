//! `cmdeploy`, the command line of the chatmail relay deploy tool, as a library: a third party
//! builds its own binary from our components, theirs, and [`main`].
//!
//! - [`components`]: links the built-in component crates.
//! - `init`, `run`, `status`, `list`, `show`, `dns`: one module per subcommand; `online`:
//!   `test` and `bench`, a live relay checked and timed from the outside.
//! - [`remote`]: `--ssh-host`, this machine or a relay over SSH; `ship`: `run` over SSH.
//! - `container` (the image's entrypoint), `probe` (its health checks) and `compose` (the
//!   compose file generated from the registry).

pub mod components;
mod compose;
mod container;
mod dns;
mod fleet;
mod init;
mod init_stamp;
mod list;
mod online;
mod probe;
mod progress;
pub mod remote;
mod run;
mod say;
mod ship;
mod show;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Deploy and operate a chatmail relay.
#[derive(Debug, Parser)]
#[command(name = "cmdeploy", version, about, long_about = None)]
struct Cli {
    /// The relay's settings file.
    #[arg(
        long,
        global = true,
        env = "CHATMAIL_INI",
        default_value = "chatmail.ini"
    )]
    config: PathBuf,

    /// Print every command as it runs, and diffs of changed files.
    #[arg(short, long, global = true)]
    verbose: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a commented chatmail.ini for DOMAIN.
    Init(init::Args),
    /// Deploy the relay: install, configure and activate its components, over SSH on the
    /// relay (by default the mail domain) or with `--ssh-host @local` on this machine.
    Run(run::Args),
    /// Show the relay's domain, deployed version, privacy settings and the state of its
    /// services; exit code 1 when a service failed or does not run as declared.
    Status(status::Args),
    /// List the components in order with their packages, files and services.
    List(list::Args),
    /// Print the effective settings and where each came from.
    Config,
    /// Check the relay's DNS records against its authoritative name servers, or write them
    /// as a zone file (--zonefile).
    Dns(dns::Args),
    /// Check a live relay from this machine as its users' clients see it: account creation
    /// by first login, refused passwords, IMAP capabilities and METADATA, an encrypted message
    /// between two fresh accounts, refusal of cleartext, forged senders and unsigned mail,
    /// `/new`, the TLS certificate and (with `cmdeploy dns`, over SSH) the DNS records. One
    /// line per check; exit code 1 when one failed.
    Test(online::TestArgs),
    /// Time IMAP and SMTP logins, sending and receiving on a live relay from this machine
    /// (median, minimum and maximum over several rounds).
    Bench(online::BenchArgs),
    /// Write a compose file that runs the relay from its image, one service per daemon.
    Compose(compose::Args),
    /// The image's entrypoint: configure this container, then run one service.
    Container(container::Args),
    /// Exit 0 when the daemon at ADDRESS is healthy (the containers' health checks, quiet in
    /// the daemons' logs): tcp:HOST:PORT or unix:PATH accepts a connection, dict:PATH answers
    /// a Dovecot dict lookup, smtp:HOST:PORT or imap:HOST:PORT greets (read at most every 10
    /// minutes; in between, the port listens).
    Probe {
        /// tcp:HOST:PORT, unix:PATH, dict:PATH, smtp:HOST:PORT or imap:HOST:PORT
        address: String,
    },
}

/// Runs the command line with the components linked into this binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let done = |result: anyhow::Result<()>| result.map(|()| ExitCode::SUCCESS);
    let result = match cli.command {
        None => done(Cli::command().print_help().map_err(Into::into)),
        Some(Command::Init(args)) => done(init::run(&cli.config, &args)),
        Some(Command::Run(args)) => run::run(&cli.config, cli.verbose, &args),
        Some(Command::Status(args)) => status::run(&cli.config, &args),
        Some(Command::List(args)) => done(list::run(&cli.config, &args)),
        Some(Command::Config) => done(show::run(&cli.config)),
        Some(Command::Dns(args)) => dns::run(&cli.config, cli.verbose, &args),
        Some(Command::Test(args)) => online::test(&cli.config, &args),
        Some(Command::Bench(args)) => online::bench(&cli.config, &args),
        Some(Command::Compose(args)) => done(compose::run(&cli.config, &args)),
        Some(Command::Container(args)) => done(container::run(&cli.config, cli.verbose, &args)),
        Some(Command::Probe { address }) => done(probe::run(&address)),
    };
    exit(result)
}

/// The exit code of a command's result; an error is printed first.
fn exit(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the settings, with `CHATMAIL_<KEY>` overrides from the environment and the settings
/// the linked components declare beyond the built-in ones.
fn load_config(
    path: &std::path::Path,
    registry: &chatmail_core::Registry,
) -> anyhow::Result<chatmail_core::config::Config> {
    let env = |name: &str| std::env::var(name).ok();
    let extra = registry.setting_keys();
    Ok(chatmail_core::config::Config::load_extended(
        path, &env, &extra,
    )?)
}

/// Where the relay's own programs are: `explicit`, or beside this executable.
fn binaries_dir(explicit: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir.to_owned());
    }
    let exe = std::env::current_exe()?;
    Ok(exe
        .parent()
        .map(std::path::Path::to_owned)
        .unwrap_or_default())
}
