//! `unbound`: the relay's own DNSSEC-validating resolver on localhost, used through
//! `/etc/resolv.conf`; replaces resolvconf and systemd-resolved.

use anyhow::Result;
use chatmail_core::plan::{Generate, Owner, Service};
use chatmail_core::{Activate, Component, Configure, Install, register};
use include_dir::{Dir, include_dir};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../templates/unbound");

/// The DNSSEC root trust anchor unbound keeps up to date.
const ROOT_KEY: &str = "/var/lib/unbound/root.key";

/// The local resolver.
#[derive(Debug)]
pub struct Unbound;

impl Component for Unbound {
    fn name(&self) -> &'static str {
        "unbound"
    }

    fn after(&self) -> &'static [&'static str] {
        &["base", "legacy"]
    }

    fn templates(&self) -> Option<&'static Dir<'static>> {
        Some(&TEMPLATES)
    }

    /// The engine installs packages with service starts blocked: an unconfigured unbound
    /// must not start (it would answer on ::1 even where IPv6 is disabled).
    fn install(&self, install: &mut Install<'_>) -> Result<()> {
        // dns-root-data provides the root trust anchor that Debian's start helper copies.
        install.packages(&["unbound", "dns-root-data", "dnsutils"]);
        // resolvconf would keep rewriting /etc/resolv.conf.
        install.purge_packages(&["resolvconf"]);
        Ok(())
    }

    fn configure(&self, configure: &mut Configure<'_>) -> Result<()> {
        configure.dir("/etc/unbound/unbound.conf.d", Owner::root(), 0o755);
        configure.template(
            "/etc/unbound/unbound.conf.d/chatmail.conf",
            "chatmail.conf.j2",
            (),
        )?;
        // In a container the engine owns resolv.conf. Elsewhere it is a plain file (a symlink
        // to a resolver manager's file is replaced) that unbound itself does not read.
        if !configure.facts.container {
            configure
                .template("/etc/resolv.conf", "resolv.conf", ())?
                .restarts(&[]);
        }
        // The trust anchor Debian's configuration names exists only once unbound has started;
        // its start helper copies it from dns-root-data. Run it once here, so that
        // unbound-checkconf can validate before the first start.
        configure.generate(Generate {
            creates: vec![ROOT_KEY.into()],
            argv: ["/usr/libexec/unbound-helper", "root_trust_anchor_update"]
                .map(str::to_owned)
                .to_vec(),
            owner: None,
        });
        configure.validate(
            &["unbound-checkconf"],
            "/etc/unbound/unbound.conf.d/chatmail.conf",
            false,
        );
        Ok(())
    }

    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        // Stopped and masked before unbound starts, so that port 53 is free.
        activate.service(Service::masked("systemd-resolved.service"));
        activate.service(Service::stopped("unbound-resolvconf.service"));
        // No container form: the relay's containers resolve through the host's resolver
        // (Docker gives them the host's resolv.conf, which no container may replace).
        activate.service(Service::running("unbound.service"));
        // systemd-resolved may hold port 53 before the first run: it is masked above.
        activate.port(53, &["unbound", "systemd-resolve"]);
        Ok(())
    }
}

register!(Unbound);
