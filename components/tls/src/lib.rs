//! `tls`: the relay's certificate in the mode the config selects. Self-signed (IPv4 relays
//! and `_`-domains): made once with openssl, never replaced. External: must exist, and a path
//! unit reloads the services when it is renewed. ACME: until acmetool has obtained the real
//! certificate, a self-signed stand-in at acmetool's paths lets the mail services start.

use anyhow::Result;
use chatmail_core::config::TlsMode;
use chatmail_core::plan::{Generate, Owner, Service};
use chatmail_core::{Activate, Component, Configure, argv, register};
use include_dir::{Dir, include_dir};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../templates/tls");

/// The relay's TLS certificate.
#[derive(Debug)]
pub struct Tls;

impl Component for Tls {
    fn name(&self) -> &'static str {
        "tls"
    }

    /// Certificates are fetched with name resolution, which unbound provides.
    fn after(&self) -> &'static [&'static str] {
        &["base", "unbound"]
    }

    fn templates(&self) -> Option<&'static Dir<'static>> {
        Some(&TEMPLATES)
    }

    fn configure(&self, configure: &mut Configure<'_>) -> Result<()> {
        let config = configure.config;
        let tls = &config.tls;
        match tls.mode {
            TlsMode::External => {
                let why = "named by tls_external_cert_and_key";
                configure.require_file(&tls.cert_path, why);
                configure.require_file(&tls.key_path, why);
                configure.template(
                    "/etc/systemd/system/tls-cert-reload.path",
                    "tls-cert-reload.path.j2",
                    (),
                )?;
                configure.template(
                    "/etc/systemd/system/tls-cert-reload.service",
                    "tls-cert-reload.service",
                    (),
                )?;
            }
            TlsMode::SelfSigned | TlsMode::Acme => {
                for dir in [tls.cert_path.parent(), tls.key_path.parent()]
                    .into_iter()
                    .flatten()
                {
                    if tls.mode == TlsMode::Acme {
                        configure.dir(dir, Owner::root(), 0o755);
                    }
                }
                let bare = &config.mail_domain_bare;
                let names = format!("subjectAltName=DNS:{bare},DNS:www.{bare},DNS:mta-sts.{bare}");
                let subject = format!("/CN={bare}");
                let key = tls.key_path.to_string_lossy();
                let cert = tls.cert_path.to_string_lossy();
                configure.generate(Generate {
                    creates: vec![tls.cert_path.clone(), tls.key_path.clone()],
                    argv: argv(&[
                        "openssl",
                        "req",
                        "-x509",
                        "-newkey",
                        "ec",
                        "-pkeyopt",
                        "ec_paramgen_curve:P-256",
                        "-noenc",
                        "-days",
                        "36500",
                        "-keyout",
                        &key,
                        "-out",
                        &cert,
                        "-subj",
                        &subject,
                        "-addext",
                        "basicConstraints=critical,CA:FALSE",
                        "-addext",
                        "extendedKeyUsage=serverAuth,clientAuth",
                        "-addext",
                        &names,
                    ]),
                    owner: None,
                });
            }
        }
        Ok(())
    }

    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        if activate.config.tls.mode == TlsMode::External {
            activate.service(Service::running("tls-cert-reload.path"));
        }
        Ok(())
    }
}

register!(Tls);
