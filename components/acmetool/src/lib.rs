//! `acmetool`: Let's Encrypt certificates in ACME mode. acmetool answers the HTTP-01
//! challenge behind nginx (its redirector on 127.0.0.1:402), renews from a daily timer, and its
//! hook points the relay's certificate link at the new certificate and reloads the services.

use anyhow::Result;
use chatmail_core::config::{ACME_LINKS, Config, TlsMode};
use chatmail_core::plan::Service;
use chatmail_core::{Activate, Component, Configure, Install, register};
use chatmail_tls::STANDIN_MARKER;
use include_dir::{Dir, include_dir};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../templates/acmetool");

/// The hook acmetool runs after it changed a certificate.
const HOOK: &str = "/etc/acme/hooks/nginx";

/// Let's Encrypt through acmetool.
#[derive(Debug)]
pub struct Acmetool;

impl Component for Acmetool {
    fn name(&self) -> &'static str {
        "acmetool"
    }

    /// The certificate link and its stand-in are the `tls` component's.
    fn after(&self) -> &'static [&'static str] {
        &["base", "tls"]
    }

    fn enabled(&self, config: &Config) -> bool {
        config.tls.mode == TlsMode::Acme
    }

    fn templates(&self) -> Option<&'static Dir<'static>> {
        Some(&TEMPLATES)
    }

    fn install(&self, install: &mut Install<'_>) -> Result<()> {
        install.packages(&["acmetool"]);
        // Renewal runs from acmetool-reconcile.timer instead.
        install.remove("/etc/cron.d/acmetool");
        install.remove("/usr/lib/acme/hooks/nginx");
        install
            .template(HOOK, "nginx-hook")?
            .mode(0o755)
            .restarts(&[]);
        Ok(())
    }

    fn configure(&self, configure: &mut Configure<'_>) -> Result<()> {
        let bare = &configure.config.mail_domain_bare;
        let desired = format!("/var/lib/acme/desired/{bare}");
        configure.template("/var/lib/acme/conf/responses", "responses.j2", ())?;
        configure.template("/var/lib/acme/conf/target", "target", ())?;
        configure.template(&desired, "desired.j2", ())?;
        // Older releases let `acmetool want` name the file; those would ask for the names twice.
        configure.on_change(
            &desired,
            &[
                "find",
                "/var/lib/acme/desired",
                "-maxdepth",
                "1",
                "-name",
                &format!("{bare}-*"),
                "-delete",
            ],
        );
        for unit in [
            "acmetool-redirector.service",
            "acmetool-reconcile.service",
            "acmetool-reconcile.timer",
        ] {
            configure.template(format!("/etc/systemd/system/{unit}"), unit, ())?;
        }
        Ok(())
    }

    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        let redirector = [
            "acmetool",
            "redirector",
            "--service.uid=daemon",
            "--bind=127.0.0.1:402",
        ];
        let service = Service::running("acmetool-redirector.service")
            .foreground(&redirector)
            .health_tcp(402)
            .capabilities(&["NET_BIND_SERVICE"]);
        activate.service(service);
        // In containers the daily renewal (the timer's 16:20) is a job; the hook's reloads need systemd, so the
        // services there read a renewed certificate when restarted.
        activate.job(
            "acmetool-reconcile",
            "20 16 * * *",
            "root",
            &["acmetool", "--batch", "reconcile"],
        );
        activate.state("/var/lib/acme", "acmetool's account, keys and certificates");
        // Its hook points the certificate link in tls's volume at a new certificate.
        activate.uses("tls");
        activate.reads("tls");
        activate.service(Service::stopped("acmetool-reconcile.service"));
        activate.service(Service::running("acmetool-reconcile.timer"));
        activate.port(402, &["acmetool"]);
        let bare = &activate.config.mail_domain_bare;
        let standin = format!("{ACME_LINKS}/{bare}/{STANDIN_MARKER}");
        activate.attempt(
            &["acmetool", "--batch", "--xlog.severity=debug", "reconcile"],
            &standin,
            &format!(
                "letsencrypt not configured: no certificate for {bare} yet, the services use a \
                 self-signed stand-in. Check that the DNS records of {bare}, www.{bare} and \
                 mta-sts.{bare} point here and port 80 is reachable, then run cmdeploy again \
                 (acmetool-reconcile.timer also retries daily)."
            ),
        );
        // When acmetool already had the certificate (e.g. /var/lib/acme copied from the old
        // host), the reconcile changed nothing and did not call the hook.
        activate.attempt(
            &[HOOK, "live-updated"],
            &standin,
            "the certificate link could not be switched to acmetool's certificate",
        );
        Ok(())
    }
}

register!(Acmetool);
