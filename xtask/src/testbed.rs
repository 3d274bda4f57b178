//! The two-relay testbed: relays `_alpha.chat.test` (self-signed) and `beta.chat.test` (a
//! certificate from a test CA both hosts trust, via `tls_external_cert_and_key`) on booted
//! test hosts joined by a bridge in a "router" network namespace, with nsd in a namespace of
//! its own on that bridge serving the `chat.test` zone with the records `cmdeploy dns
//! --zonefile` asks for, and each relay's unbound resolving `chat.test` through it. This
//! machine is on the bridge too (`.1`), so the Delta Chat client here reaches both relays.
//! Addresses: `10.77.<net>.1` this machine, `.2` alpha, `.3` beta, `.53` nsd. Nothing routes
//! out of the bridge.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::host::{self, Host};
use crate::nsd::{Nsd, Zone};
use crate::{bundle, check, rootfs};

/// The zone nsd serves; both relays' domains are inside it.
pub const ZONE: &str = "chat.test";
/// The bridge inside the router namespace.
const BRIDGE: &str = "br0";
/// Where the test CA's certificate goes in both roots (update-ca-certificates adds it).
const CA_IN_ROOT: &str = "usr/local/share/ca-certificates/chatmail-testbed.crt";
/// Relay beta's certificate from the test CA and its key, named by its
/// `tls_external_cert_and_key`.
const CA_SIGNED_CERT: &str = "/etc/ssl/testbed/fullchain.pem";
const CA_SIGNED_KEY: &str = "/etc/ssl/testbed/key.pem";
/// The unbound drop-in that sends `chat.test` questions to nsd (the unbound component owns
/// only its own `chatmail.conf` in that directory).
const UNBOUND_DROP_IN: &str = "etc/unbound/unbound.conf.d/testbed.conf";

/// Where and under which names a testbed runs, so that the demo and the tests never collide.
#[derive(Debug, Clone)]
pub struct Options {
    /// Prefix of namespace, link and machine names (at most 6 characters).
    pub prefix: String,
    /// The testbed's network is `10.77.<net>.0/24`.
    pub net: u8,
    /// Working directory: the installed root, the relays' roots, the CA, nsd's files.
    pub dir: PathBuf,
    /// The `cmdeploy` whose bundle (and programs beside it) the relays are deployed with.
    pub cmdeploy: PathBuf,
}

impl Options {
    fn router(&self) -> String {
        format!("{}-router", self.prefix)
    }

    fn dns_ns(&self) -> String {
        format!("{}-dns", self.prefix)
    }

    fn uplink(&self) -> String {
        format!("{}-up", self.prefix)
    }

    pub fn address(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.net, last)
    }

    fn state_file(&self) -> PathBuf {
        self.dir.join("running")
    }
}

/// One relay of the testbed.
#[derive(Debug)]
pub struct Relay {
    /// `mail_domain`.
    pub domain: String,
    pub host: Host,
}

impl Relay {
    /// The host's root directory on this machine.
    pub fn root(&self) -> &Path {
        &self.host.root
    }

    /// Runs the bundled `cmdeploy run` on the relay itself; fails with its output unless it
    /// succeeds, and returns the output.
    pub fn deploy(&self, extra: &[&str]) -> Result<String> {
        let argv = bundle::host_run(extra);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let output = self.host.exec(&argv)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if !output.status.success() {
            bail!("cmdeploy run failed on {}:\n{text}", self.domain);
        }
        Ok(text)
    }

    /// `cmdeploy dns` on the relay itself with `extra` arguments.
    pub fn dns(&self, extra: &[&str]) -> Result<std::process::Output> {
        let cmdeploy = format!("{}/cmdeploy", bundle::HOST_DIR);
        let mut argv = vec![
            cmdeploy.as_str(),
            "dns",
            "--ssh-host",
            "@local",
            "--config",
            bundle::HOST_CONFIG,
        ];
        argv.extend(extra);
        self.host.exec(&argv)
    }
}

/// The running testbed. Dropping it stops both hosts and nsd and removes the namespaces.
#[derive(Debug)]
pub struct Testbed {
    pub alpha: Relay,
    pub beta: Relay,
    /// The test CA's certificate (PEM) on this machine, which both relays trust.
    pub ca: PathBuf,
    nsd: Nsd,
    network: Network,
}

impl Testbed {
    /// Builds the roots (the install phase once, copied for the second relay), the network,
    /// boots both hosts, deploys both relays, publishes their zones and checks them with
    /// `cmdeploy dns`. Anything left by an earlier testbed with these options is removed first.
    pub fn start(options: &Options) -> Result<Testbed> {
        stop_kept(options)?;
        let network = Network::create(options)?;
        std::fs::create_dir_all(&options.dir)?;
        let installed = installed_root(options)?;
        let ca = make_ca(&options.dir.join("ca"))?;
        let relays = [
            ("alpha", format!("_alpha.{ZONE}"), 2),
            ("beta", format!("beta.{ZONE}"), 3),
        ];
        let mut hosts = Vec::new();
        for (name, domain, last) in &relays {
            let root = options.dir.join(name);
            copy_root(&installed, &root)?;
            prepare_root(options, &root, domain, &ca)?;
            let machine = format!("{}-{}", options.prefix, &name[..1]);
            let address = options.address(*last);
            hosts.push(Host::boot_on_bridge(
                &root,
                &machine,
                address,
                &network.router,
                BRIDGE,
            )?);
        }
        let beta_host = hosts.pop().context("two hosts")?;
        let alpha_host = hosts.pop().context("two hosts")?;
        let alpha = Relay {
            domain: relays[0].1.clone(),
            host: alpha_host,
        };
        let beta = Relay {
            domain: relays[1].1.clone(),
            host: beta_host,
        };
        // The relays' own addresses first: `cmdeploy dns` needs them to produce the zone.
        let addresses = [&alpha, &beta]
            .iter()
            .map(|r| format!("{}. 3600 IN A {}\n", r.domain, r.host.address))
            .collect::<String>();
        let nsd_dir = options.dir.join("nsd");
        let nsd = Nsd::start(
            &network.dns,
            &options.address(53).to_string(),
            &nsd_dir,
            &[Zone {
                name: ZONE.into(),
                records: addresses,
            }],
        )?;
        let mut testbed = Testbed {
            alpha,
            beta,
            ca: options.dir.join("ca/ca.pem"),
            nsd,
            network,
        };
        std::thread::scope(|scope| -> Result<()> {
            let a = scope.spawn(|| testbed.alpha.deploy(&[]));
            let b = scope.spawn(|| testbed.beta.deploy(&[]));
            for (relay, join) in [("alpha", a), ("beta", b)] {
                let output = join
                    .join()
                    .map_err(|_| anyhow::anyhow!("deploying {relay} panicked"))??;
                eprintln!("{relay}: deployed\n{output}");
            }
            Ok(())
        })?;
        testbed.publish_zones(options)?;
        Ok(testbed)
    }

    /// Serves the zone `cmdeploy dns --zonefile` writes for each relay and checks that each
    /// relay's `cmdeploy dns` finds every record through its own unbound.
    fn publish_zones(&mut self, options: &Options) -> Result<()> {
        let mut records = String::new();
        for relay in [&self.alpha, &self.beta] {
            let output = relay.dns(&["--zonefile", "/root/zone"])?;
            if !output.status.success() {
                bail!(
                    "cmdeploy dns --zonefile on {}: {}",
                    relay.domain,
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            let file = relay.root().join("root/zone");
            records += &std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
        }
        self.nsd.stop();
        self.nsd = Nsd::start(
            &self.network.dns,
            &options.address(53).to_string(),
            &options.dir.join("nsd"),
            &[Zone {
                name: ZONE.into(),
                records,
            }],
        )?;
        for relay in [&self.alpha, &self.beta] {
            let output = relay.dns(&[])?;
            if !output.status.success() {
                bail!(
                    "cmdeploy dns on {} after publishing its zone:\n{}{}",
                    relay.domain,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
        Ok(())
    }

    /// Leaves everything running (for `cargo xtask demo --relays 2`); `stop_kept` with the
    /// same options stops it.
    pub fn keep_running(self, options: &Options) -> Result<()> {
        let Testbed {
            alpha,
            beta,
            nsd,
            network,
            ..
        } = self;
        let state = format!(
            "{} {} {}\n",
            alpha.host.keep_running(),
            beta.host.keep_running(),
            nsd.keep_running()
        );
        network.keep();
        std::fs::write(options.state_file(), state)?;
        Ok(())
    }
}

/// Stops a testbed left running by [`Testbed::keep_running`] (if any) and removes the
/// namespaces and links of these options.
pub fn stop_kept(options: &Options) -> Result<()> {
    if let Ok(state) = std::fs::read_to_string(options.state_file()) {
        let pids: Vec<u32> = state
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if let [alpha, beta, nsd] = pids[..] {
            host::stop_pid(alpha)?;
            host::stop_pid(beta)?;
            Nsd::attach(nsd).stop();
        }
        std::fs::remove_file(options.state_file())?;
    }
    Network::remove(options);
    Ok(())
}

/// The router namespace with the bridge, this machine's link to it, and nsd's namespace.
#[derive(Debug)]
struct Network {
    router: String,
    dns: String,
    uplink: String,
    /// Left in place when dropped (a kept testbed).
    kept: bool,
}

impl Network {
    fn create(options: &Options) -> Result<Network> {
        Network::remove(options);
        let network = Network {
            router: options.router(),
            dns: options.dns_ns(),
            uplink: options.uplink(),
            kept: false,
        };
        let (router, dns) = (network.router.as_str(), network.dns.as_str());
        let inside = format!("{}-upr", options.prefix);
        let inside = inside.as_str();
        let dns_link = format!("{}-ns", options.prefix);
        let cidr = |last: u8| format!("{}/24", options.address(last));
        for argv in [
            vec!["netns", "add", router],
            vec!["netns", "add", dns],
            vec!["-n", router, "link", "add", BRIDGE, "type", "bridge"],
            vec!["-n", router, "link", "set", BRIDGE, "up"],
            vec!["-n", router, "link", "set", "lo", "up"],
            // This machine on the bridge.
            vec![
                "link",
                "add",
                &network.uplink,
                "type",
                "veth",
                "peer",
                "name",
                inside,
            ],
            vec!["link", "set", inside, "netns", router],
            vec!["-n", router, "link", "set", inside, "master", BRIDGE, "up"],
            vec!["addr", "add", &cidr(1), "dev", &network.uplink],
            vec!["link", "set", &network.uplink, "up"],
            // nsd's namespace on the bridge.
            vec![
                "-n", router, "link", "add", "nsd", "type", "veth", "peer", "name", &dns_link,
            ],
            vec!["-n", router, "link", "set", &dns_link, "netns", dns],
            vec!["-n", router, "link", "set", "nsd", "master", BRIDGE, "up"],
            vec!["-n", dns, "addr", "add", &cidr(53), "dev", &dns_link],
            vec!["-n", dns, "link", "set", &dns_link, "up"],
            vec!["-n", dns, "link", "set", "lo", "up"],
        ] {
            check(Command::new("ip").args(&argv))?;
        }
        Ok(network)
    }

    fn keep(mut self) {
        self.kept = true;
    }

    /// Removes the namespaces (and with them every link inside) and this machine's link.
    fn remove(options: &Options) {
        for ns in [options.router(), options.dns_ns()] {
            let _ = Command::new("ip").args(["netns", "delete", &ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "delete", &options.uplink()])
            .output();
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        for ns in [&self.router, &self.dns] {
            let _ = Command::new("ip").args(["netns", "delete", ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "delete", &self.uplink])
            .output();
    }
}

/// The bootable rootfs with the install phase done (with our delay-free Dovecot), kept in `<dir>/installed` (a later start
/// re-runs the install phase, which does nothing when every package is there).
fn installed_root(options: &Options) -> Result<PathBuf> {
    let root = options.dir.join("installed");
    if !root.join("etc/debian_version").exists() {
        let _ = std::fs::remove_dir_all(&root);
        rootfs::extract(&rootfs::ensure_bootable()?, &root)?;
    }
    check(
        Command::new(&options.cmdeploy)
            .args(["run", "--phase", "install", "--config", "/nonexistent"])
            .arg("--root")
            .arg(&root)
            .env(crate::dovecot::DEBS_ENV, crate::dovecot::ensure()?),
    )?;
    Ok(root)
}

fn copy_root(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to).with_context(|| format!("removing {}", to.display()))?;
    }
    check(Command::new("cp").arg("-a").arg(from).arg(to))
}

/// The bundle, the settings, the resolver (the relay's own unbound, with `chat.test` sent to
/// nsd), the test CA and (for a domain without `_`) the CA's certificate for it in a relay's
/// root before it boots.
fn prepare_root(options: &Options, root: &Path, domain: &str, ca: &Path) -> Result<()> {
    let inside = |path: &str| root.join(path.trim_start_matches('/'));
    bundle::copy(&options.cmdeploy, &inside(bundle::HOST_DIR))?;
    let mut settings = format!("[params]\nmail_domain = {domain}\n");
    // A `_` domain makes its own certificate; another gets one from the test CA.
    if !domain.starts_with('_') {
        install_certificate(ca.parent().context("the CA's directory")?, root, domain)?;
        settings += &format!("tls_external_cert_and_key = {CA_SIGNED_CERT} {CA_SIGNED_KEY}\n");
    }
    // Accept accounts whatever this shared machine's load.
    settings += "max_load_1m = 1000\n";
    write(&inside(bundle::HOST_CONFIG), &settings)?;
    let resolv = inside("/etc/resolv.conf");
    let _ = std::fs::remove_file(&resolv);
    write(&resolv, "nameserver 127.0.0.1\n")?;
    let unbound = format!(
        "# The chatmail testbed: {ZONE} comes from the testbed's nsd, unsigned.\n\
         server:\n    local-zone: \"test.\" nodefault\n    domain-insecure: \"{ZONE}\"\n\
         stub-zone:\n    name: \"{ZONE}\"\n    stub-addr: {}\n",
        options.address(53)
    );
    write(&inside(UNBOUND_DROP_IN), &unbound)?;
    std::fs::copy(ca, inside(CA_IN_ROOT)).context("copying the test CA")?;
    check(
        Command::new("chroot")
            .arg(root)
            .args(["update-ca-certificates", "--fresh"]),
    )
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The test CA (key and certificate in `dir`, made once); returns the certificate's path.
fn make_ca(dir: &Path) -> Result<PathBuf> {
    let cert = dir.join("ca.pem");
    if cert.exists() {
        return Ok(cert);
    }
    std::fs::create_dir_all(dir)?;
    check(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-noenc", "-days", "3650"])
            .args(["-subj", "/CN=chatmail testbed CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(dir.join("ca.key"))
            .arg("-out")
            .arg(&cert),
    )?;
    Ok(cert)
}

/// A certificate for `domain` (and its `www.` and `mta-sts.` names) signed by the test CA,
/// written where the relay's `tls_external_cert_and_key` names it.
fn install_certificate(ca: &Path, root: &Path, domain: &str) -> Result<()> {
    let key = root.join(CA_SIGNED_KEY.trim_start_matches('/'));
    let cert = root.join(CA_SIGNED_CERT.trim_start_matches('/'));
    std::fs::create_dir_all(key.parent().context("key path")?)?;
    let csr = ca.join(format!("{domain}.csr"));
    check(
        Command::new("openssl")
            .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-noenc"])
            .args(["-subj", &format!("/CN={domain}")])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr),
    )?;
    let extensions = ca.join(format!("{domain}.ext"));
    write(
        &extensions,
        &format!(
            "subjectAltName=DNS:{domain},DNS:www.{domain},DNS:mta-sts.{domain}\n\
             basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
        ),
    )?;
    check(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "3650", "-CAcreateserial"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(ca.join("ca.pem"))
            .arg("-CAkey")
            .arg(ca.join("ca.key"))
            .arg("-extfile")
            .arg(&extensions)
            .arg("-out")
            .arg(&cert),
    )
}
