//! `base`: what every relay needs first: apt settings, basic packages, the `vmail` and `iroh`
//! users, the mailboxes directory and `/etc/mailname`.

use anyhow::Result;
use chatmail_core::plan::{Owner, User};
use chatmail_core::{Activate, Component, Configure, Install, register};
use include_dir::{Dir, include_dir};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../templates/base");

/// The base system of a relay.
#[derive(Debug)]
pub struct Base;

impl Component for Base {
    fn name(&self) -> &'static str {
        "base"
    }

    fn templates(&self) -> Option<&'static Dir<'static>> {
        Some(&TEMPLATES)
    }

    fn install(&self, install: &mut Install<'_>) -> Result<()> {
        install.template(
            "/etc/apt/apt.conf.d/00InstallRecommends",
            "00InstallRecommends",
        )?;
        install.packages(&["ca-certificates", "openssl"]);
        install.user(User::system("vmail"));
        install.user(User::system("iroh"));
        Ok(())
    }

    fn configure(&self, configure: &mut Configure<'_>) -> Result<()> {
        let config = configure.config;
        configure.dir(&config.mailboxes_dir, Owner::new("vmail", "vmail"), 0o700);
        configure.file("/etc/mailname", format!("{}\n", config.mail_domain));
        Ok(())
    }

    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        let mailboxes = &activate.config.mailboxes_dir;
        activate.state(
            mailboxes,
            "the mailboxes, with each account's password hash and push tokens",
        );
        Ok(())
    }
}

register!(Base);
