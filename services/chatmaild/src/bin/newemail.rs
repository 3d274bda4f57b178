//! `newemail`: the CGI (run by fcgiwrap) that answers `/new` with a suggested account.

use std::io::Write;
use std::path::PathBuf;

use chatmaild::newemail::{INI_ENV, response};
use clap::Parser;

/// Print a CGI response suggesting a fresh address and password for this relay. The ini is
/// read from $CHATMAIL_INI (default /usr/local/lib/chatmaild/chatmail.ini).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The relay's chatmail.ini.
    #[arg(long, env = INI_ENV, default_value = chatmaild::DEFAULT_INI)]
    ini: PathBuf,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let answer = chatmaild::load_config(&args.ini).and_then(|config| response(&config));
    let mut stdout = std::io::stdout().lock();
    let written = match answer {
        Ok(body) => stdout.write_all(body.as_bytes()),
        Err(err) => {
            eprintln!("newemail: {err:#}");
            stdout.write_all(b"Status: 500 Internal Server Error\nContent-Type: text/plain\n\nno account available\n")
        }
    };
    match written.and_then(|()| stdout.flush()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}
