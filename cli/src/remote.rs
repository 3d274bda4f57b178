//! `--ssh-host`: whether a command acts on this machine or on a relay reached with the
//! system's `ssh` client as `root@HOST`, and how commands run there.

use std::ffi::OsString;
use std::process::{Command, ExitStatus, Output, Stdio};

use anyhow::{Context, Result, bail};
use chatmail_core::config::Config;
use chatmail_core::{Target, shell_words, tail};

/// Extra `ssh` options (split at whitespace), e.g. `-i KEY -p 2222`.
pub const SSH_OPTIONS_ENV: &str = "CMDEPLOY_SSH";

/// The `--ssh-host` flag, shared by the commands that act on a relay.
#[derive(Debug, Clone, clap::Args)]
pub struct SshArgs {
    /// The relay to act on, over SSH as root@HOST with the system's ssh client (its config,
    /// keys and agent apply; extra options in $CMDEPLOY_SSH). `localhost` or `@local`: this
    /// machine. Default: the mail domain.
    #[arg(long, value_name = "HOST")]
    pub ssh_host: Option<String>,
}

/// Where a command acts.
#[derive(Debug)]
pub enum Place {
    /// This machine.
    Local,
    /// A relay over SSH.
    Ssh(Ssh),
}

impl SshArgs {
    /// The place `--ssh-host` names, or the mail domain of `config` when it is not given.
    pub fn place(&self, config: Option<&Config>) -> Result<Place> {
        let host = match (&self.ssh_host, config) {
            (Some(host), _) => host.clone(),
            (None, Some(config)) => config.mail_domain_bare.clone(),
            (None, None) => bail!(
                "no relay to act on: give --ssh-host HOST (or `@local` for this machine), \
                 or settings whose mail_domain names it"
            ),
        };
        Place::parse(&host)
    }
}

impl Place {
    /// `localhost` and `@local` are this machine; anything else is an SSH host name.
    pub fn parse(host: &str) -> Result<Place> {
        if host == "localhost" || host == "@local" {
            return Ok(Place::Local);
        }
        let valid = !host.is_empty()
            && !host.starts_with('-')
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
        if !valid {
            bail!(
                "--ssh-host {host:?} is not a host name or address (cmdeploy logs in as root; \
                 set a port or key in ~/.ssh/config or ${SSH_OPTIONS_ENV})"
            );
        }
        let options = std::env::var(SSH_OPTIONS_ENV).unwrap_or_default();
        Ok(Place::Ssh(Ssh {
            destination: format!("root@{host}"),
            options: options.split_whitespace().map(OsString::from).collect(),
        }))
    }

    /// Runs `argv` there, capturing its output, whatever its exit status.
    pub fn output(&self, argv: &[String]) -> Result<Output> {
        match self {
            Place::Local => Target::new("/".as_ref(), false)?.run_unchecked(argv, &[]),
            Place::Ssh(ssh) => ssh.output(argv),
        }
    }
}

/// A relay reached with the system's `ssh` client.
#[derive(Debug)]
pub struct Ssh {
    /// `root@HOST`.
    pub destination: String,
    options: Vec<OsString>,
}

impl Ssh {
    /// `ssh` running `argv` on the relay: batch mode (no password prompts), the caller's
    /// options, and argv quoted for the remote user's shell (ssh hands it a command line).
    pub fn command(&self, argv: &[String]) -> Command {
        let mut command = Command::new("ssh");
        command
            .args(["-o", "BatchMode=yes"])
            .args(&self.options)
            .arg(&self.destination)
            .arg("--")
            .arg(shell_words(argv));
        command
    }

    /// Runs `argv` on the relay and captures its output; an SSH failure is an error.
    pub fn output(&self, argv: &[String]) -> Result<Output> {
        let output = self
            .command(argv)
            .stdin(Stdio::null())
            .output()
            .context("cannot run ssh (is openssh-client installed?)")?;
        self.check_connection(output.status, || tail(&output))?;
        Ok(output)
    }

    /// Fails when `ssh` itself failed (exit status 255) rather than the remote command.
    pub fn check_connection(&self, status: ExitStatus, stderr: impl Fn() -> String) -> Result<()> {
        if status.code() == Some(255) {
            bail!("ssh {} failed:\n{}", self.destination, stderr());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names_and_host_names_are_told_apart_and_odd_hosts_refused() {
        assert!(matches!(Place::parse("@local"), Ok(Place::Local)));
        assert!(matches!(Place::parse("localhost"), Ok(Place::Local)));
        match Place::parse("10.77.50.2") {
            Ok(Place::Ssh(ssh)) => assert_eq!(ssh.destination, "root@10.77.50.2"),
            other => panic!("{other:?}"),
        }
        for bad in ["", "-oProxyCommand=x", "a b", "admin@relay", "relay;rm"] {
            let err = Place::parse(bad).err().map(|e| e.to_string());
            assert!(
                err.is_some_and(|e| e.contains("is not a host name")),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_remote_command_line_is_quoted_for_the_remote_shell() {
        let Ok(Place::Ssh(ssh)) = Place::parse("relay.example.org") else {
            panic!("not ssh");
        };
        let argv = ["sh", "-c", "echo \"$1\"", "sh", "it's"].map(String::from);
        let command = ssh.command(&argv);
        let args: Vec<_> = command.get_args().map(|a| a.to_string_lossy()).collect();
        assert_eq!(
            args.last().map(|a| a.to_string()),
            Some(r#"sh -c 'echo "$1"' sh 'it'\''s'"#.to_owned())
        );
        assert!(args.iter().any(|a| a == "root@relay.example.org"));
    }
}
