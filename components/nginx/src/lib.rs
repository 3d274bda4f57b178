//! `nginx`: port 443 multiplexes by ALPN (`smtp` to Postfix 465, `imap` to Dovecot 993,
//! everything else to the HTTPS server on 127.0.0.1:8443); the HTTPS server serves the
//! website, autoconfig and MTA-STS, `/new` (account creation through fcgiwrap), `/mxdeliv`
//! (filtermail) and iroh's paths; port 80 redirects to HTTPS and forwards ACME challenges.

use std::collections::BTreeMap;

use anyhow::Result;
use chatmail_core::plan::{Owner, Service};
use chatmail_core::{Activate, Component, Configure, Install, register};
use include_dir::{Dir, include_dir};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../templates/nginx");

/// The account-creation CGI program, installed by the `chatmaild` component.
pub const NEWEMAIL_CGI: &str = "/usr/lib/cgi-bin/newemail";

/// The web server and TLS multiplexer.
#[derive(Debug)]
pub struct Nginx;

impl Component for Nginx {
    fn name(&self) -> &'static str {
        "nginx"
    }

    /// fcgiwrap serves `/new`; the certificate comes from `tls`; acmetool's redirector
    /// answers the challenges nginx forwards.
    fn after(&self) -> &'static [&'static str] {
        &["base", "tls", "acmetool", "fcgiwrap", "website"]
    }

    fn templates(&self) -> Option<&'static Dir<'static>> {
        Some(&TEMPLATES)
    }

    fn install(&self, install: &mut Install<'_>) -> Result<()> {
        install.packages(&["nginx", "libnginx-mod-stream"]);
        Ok(())
    }

    fn configure(&self, configure: &mut Configure<'_>) -> Result<()> {
        let fcgiwrap_socket = match configure.facts.foreground() {
            true => chatmail_fcgiwrap::CONTAINER_SOCKET,
            false => "/run/fcgiwrap.socket",
        };
        // nginx re-reads it on reload, finishing requests in progress.
        configure
            .template(
                "/etc/nginx/nginx.conf",
                "nginx.conf.j2",
                BTreeMap::from([
                    ("newemail_cgi", NEWEMAIL_CGI),
                    ("fcgiwrap_socket", fcgiwrap_socket),
                ]),
            )?
            .reloads(&["nginx.service"]);
        // Static files: nginx serves them as they are, nothing to restart.
        configure
            .template(
                "/var/www/html/.well-known/autoconfig/mail/config-v1.1.xml",
                "config-v1.1.xml.j2",
                (),
            )?
            .restarts(&[]);
        configure
            .template(
                "/var/www/html/.well-known/mta-sts.txt",
                "mta-sts.txt.j2",
                (),
            )?
            .restarts(&[]);
        configure.validate(&["nginx", "-t", "-q", "-c"], "/etc/nginx/nginx.conf", false);
        Ok(())
    }

    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        let service = Service::running("nginx.service")
            .foreground(&["nginx", "-g", "daemon off;"])
            .health_tcp(443)
            // Ports 80 and 443, the master's signals to its workers.
            .capabilities(&["NET_BIND_SERVICE", "KILL"]);
        activate.service(service);
        // The certificate, fcgiwrap's socket and the web pages.
        for used in ["tls", "acmetool", "fcgiwrap"] {
            activate.uses(used);
        }
        for read in ["tls", "acmetool", "website"] {
            activate.reads(read);
        }
        let root = || Owner::new("root", "root");
        let why = "nginx's request bodies and proxy buffers";
        activate.private("/var/lib/nginx", root(), 0o755, why);
        let why = "nginx's log directory, opened before its settings send the logs to stderr";
        activate.private("/var/log/nginx", root(), 0o755, why);
        activate.port(80, &["acmetool", "nginx"]);
        activate.port(443, &["nginx"]);
        activate.port(8443, &["nginx"]);
        Ok(())
    }
}

register!(Nginx);
