//! `tls`: the relay's certificate in the mode the config selects. Self-signed (IPv4 relays
//! and `_`-domains): made once with openssl, never replaced. External: must exist, and a path
//! unit reloads the services when it is renewed. ACME: the services read the certificate
//! through a link that points at a self-signed stand-in until acmetool (the `acmetool`
//! component) has obtained the real one, and at acmetool's certificate afterwards.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use chatmail_core::config::{ACME_LINKS, TlsMode};
use chatmail_core::plan::{Generate, Owner, Service};
use chatmail_core::{Activate, Component, Configure, argv, register};
use include_dir::{Dir, include_dir};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../templates/tls");

/// Where the ACME mode's stand-in certificates are made, one directory per domain.
pub const STANDIN_DIR: &str = "/var/lib/chatmail-tls/standin";

/// Where a container keeps its self-signed certificate and key (a state volume); the paths
/// the services read are links to them, made in each container's own layer.
pub const CONTAINER_SELF_SIGNED: &str = "/var/lib/chatmail-tls/self-signed";

/// A file inside each stand-in directory: while the link reaches it, the stand-in is in use.
pub const STANDIN_MARKER: &str = "STAND-IN";

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
        let bare = &config.mail_domain_bare;
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
            TlsMode::SelfSigned if configure.facts.foreground() => {
                // /etc/ssl cannot be a volume (it holds the image's CA certificates): the pair
                // lives in the state volume, and the usual paths link to it.
                let dir = Path::new(CONTAINER_SELF_SIGNED);
                configure.dir(dir, Owner::root(), 0o700);
                let (cert, key) = (dir.join("fullchain"), dir.join("privkey"));
                self_signed(configure, bare, &cert, &key);
                for (link, to) in [(&tls.cert_path, &cert), (&tls.key_path, &key)] {
                    configure.generate(Generate {
                        creates: vec![link.clone()],
                        argv: argv(&["ln", "-s", &to.to_string_lossy(), &link.to_string_lossy()]),
                        owner: None,
                    });
                }
            }
            TlsMode::SelfSigned => {
                self_signed(configure, bare, &tls.cert_path, &tls.key_path);
            }
            TlsMode::Acme => {
                let standin = format!("{STANDIN_DIR}/{bare}");
                let link = format!("{ACME_LINKS}/{bare}");
                configure.dir(ACME_LINKS, Owner::root(), 0o755);
                configure.dir(&standin, Owner::root(), 0o700);
                configure
                    .template(
                        format!("{standin}/{STANDIN_MARKER}"),
                        "STAND-IN.j2",
                        BTreeMap::from([("link", &link)]),
                    )?
                    .restarts(&[]);
                let standin = Path::new(&standin);
                self_signed(
                    configure,
                    bare,
                    &standin.join("fullchain"),
                    &standin.join("privkey"),
                );
                // Made once: afterwards only acmetool's hook repoints it. Relative, so that
                // it resolves the same inside a `--root` directory.
                configure.generate(Generate {
                    creates: vec![link.clone().into()],
                    argv: argv(&["ln", "-s", &format!("../standin/{bare}"), &link]),
                    owner: None,
                });
            }
        }
        Ok(())
    }

    fn activate(&self, activate: &mut Activate<'_>) -> Result<()> {
        match activate.config.tls.mode {
            // In containers the operator mounts the certificate files at the configured paths.
            TlsMode::External => activate.service(Service::running("tls-cert-reload.path")),
            TlsMode::SelfSigned | TlsMode::Acme => activate.state(
                "/var/lib/chatmail-tls",
                "the relay's certificate and key, made once (self-signed, or the ACME stand-in and link)",
            ),
        }
        Ok(())
    }
}

/// Declares the self-signed certificate for `bare`, made once with openssl, never replaced.
fn self_signed(configure: &mut Configure<'_>, bare: &str, cert: &Path, key: &Path) {
    let names = format!("subjectAltName=DNS:{bare},DNS:www.{bare},DNS:mta-sts.{bare}");
    let subject = format!("/CN={bare}");
    configure.generate(Generate {
        creates: vec![key.to_owned(), cert.to_owned()],
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
            &key.to_string_lossy(),
            "-out",
            &cert.to_string_lossy(),
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

register!(Tls);
