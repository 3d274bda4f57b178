//! Security updates on a booted Debian 12 host: unattended-upgrades configured for Debian's
//! security archive alone, apt's daily timers enabled and shown by `cmdeploy status`, and
//! `cmdeploy run --upgrade` applying a pending upgrade (a newer nginx from a local archive,
//! the host's only one) in a dry run and for real, restarting nginx and nothing else.
//! Slow: root, a booted systemd-nspawn host; ignored unless run with `--include-ignored`.

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use support::*;
use xtask::host::Host;

/// The version the local archive's nginx gets: above the installed one.
const BUMP: &str = "+upgradetest1";

/// Where the local archive lives in the host.
const ARCHIVE: &str = "/srv/upgrade-archive";

/// The running units this test watches for restarts.
const UNITS: &[&str] = &[
    "nginx.service",
    "postfix@-.service",
    "dovecot.service",
    "unbound.service",
    "filtermail.service",
    "doveauth.service",
];

fn start_stamps(host: &Host) -> BTreeMap<&'static str, String> {
    UNITS
        .iter()
        .map(|unit| {
            let property = "--property=ActiveEnterTimestampMonotonic";
            let stamp = host
                .exec_ok(&["systemctl", "show", property, "--value", unit])
                .unwrap();
            assert_ne!(stamp.trim(), "0", "{unit} never became active");
            (*unit, stamp.trim().to_owned())
        })
        .collect()
}

fn installed_version(host: &Host, package: &str) -> String {
    host.exec_ok(&["dpkg-query", "-W", "-f=${Version}", package])
        .unwrap()
        .trim()
        .to_owned()
}

/// `dpkg-query -s` of an installed package as the control file of a rebuilt one: the
/// installation's own fields dropped, the version raised.
fn rebuilt_control(status: &str, version: &str) -> String {
    let mut control = String::new();
    let mut keep = true;
    for line in status.lines() {
        if !line.starts_with([' ', '\t']) {
            let field = line.split(':').next().unwrap_or("");
            keep = !["Status", "Conffiles", "Config-Version"].contains(&field);
            if field == "Version" {
                control.push_str(&format!("Version: {version}\n"));
                continue;
            }
        }
        if keep {
            control.push_str(line);
            control.push('\n');
        }
    }
    control
}

/// Rebuilds the installed `nginx` (its files, conffiles left out) as version `<installed>`
/// plus [`BUMP`] into a flat archive in the host, and makes that archive the host's only
/// apt source (test hosts have no route to a Debian mirror).
fn publish_newer_nginx(root: &Root, host: &Host, installed: &str) {
    // In the host, /tmp is its own (a tmpfs): the tree is built under /root.
    let tree = root.path.join("root/nginx-rebuild");
    let conffiles = host
        .exec_ok(&["dpkg-query", "-W", "-f=${Conffiles}", "nginx"])
        .unwrap();
    let conffiles: Vec<&str> = conffiles
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    let base = std::fs::canonicalize(&root.path).unwrap();
    for path in host.exec_ok(&["dpkg", "-L", "nginx"]).unwrap().lines() {
        let from = root.path.join(path.trim_start_matches('/'));
        let to = tree.join(path.trim_start_matches('/'));
        // Files the deploy removed (the default site) are left out, and so are paths below
        // a directory the package ships as a symbolic link (the link carries them).
        let Ok(meta) = std::fs::symlink_metadata(&from) else {
            continue;
        };
        let inside = Path::new(path.trim_start_matches('/')).parent().unwrap();
        if std::fs::canonicalize(from.parent().unwrap()).unwrap() != base.join(inside) {
            continue;
        }
        if meta.is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else if meta.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from).unwrap(), &to).unwrap();
        } else if !conffiles.contains(&path) {
            std::fs::copy(&from, &to).unwrap();
        }
    }
    let status = host.exec_ok(&["dpkg-query", "-s", "nginx"]).unwrap();
    std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
    let control = rebuilt_control(&status, &format!("{installed}{BUMP}"));
    std::fs::write(tree.join("DEBIAN/control"), control).unwrap();

    let deb = format!("{ARCHIVE}/nginx.deb");
    std::fs::create_dir_all(root.path.join(ARCHIVE.trim_start_matches('/'))).unwrap();
    host.exec_ok(&[
        "dpkg-deb",
        "--build",
        "--root-owner-group",
        "/root/nginx-rebuild",
        &deb,
    ])
    .unwrap();
    let fields = host.exec_ok(&["dpkg-deb", "--field", &deb]).unwrap();
    let size = std::fs::metadata(root.path.join(deb.trim_start_matches('/')))
        .unwrap()
        .len();
    let sum = host.exec_ok(&["sha256sum", &deb]).unwrap();
    let sum = sum.split_whitespace().next().unwrap();
    let packages = format!(
        "{}\nFilename: ./nginx.deb\nSize: {size}\nSHA256: {sum}\n\n",
        fields.trim_end()
    );
    std::fs::write(root.path.join("srv/upgrade-archive/Packages"), packages).unwrap();

    // The Debian sources go aside; the local archive is the only one.
    let apt = root.path.join("etc/apt");
    let aside = root.path.join("root/apt-sources-aside");
    std::fs::create_dir_all(&aside).unwrap();
    for name in ["sources.list", "sources.list.d/debian.sources"] {
        let source = apt.join(name);
        if source.exists() {
            std::fs::rename(&source, aside.join(name.replace('/', "_"))).unwrap();
        }
    }
    std::fs::write(
        apt.join("sources.list.d/upgrade-test.list"),
        format!("deb [trusted=yes] file:{ARCHIVE} ./\n"),
    )
    .unwrap();
}

#[test]
#[ignore = "slow: root, a booted systemd-nspawn host"]
fn security_upgrades_are_unattended_and_run_upgrade_restarts_what_it_replaced() {
    let (root, host) = relay_host("cm-upgrade", 52, "mail_domain = _upgrade.example.org\n");
    host_deploy(&host, &[]);
    assert!(host_deploy(&host, &[]).contains("nothing to change"));

    // unattended-upgrades itself reads the settings: Debian's security archive only.
    let dry = host
        .exec(&["unattended-upgrade", "--dry-run", "--debug"])
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&dry.stdout),
        String::from_utf8_lossy(&dry.stderr)
    );
    let allowed = log
        .lines()
        .find(|line| line.contains("Allowed origins are:"))
        .unwrap_or_else(|| panic!("no allowed origins in:\n{log}"));
    assert!(
        allowed.contains("origin=Debian,codename=bookworm-security,label=Debian-Security"),
        "{allowed}"
    );
    assert!(
        !allowed.contains("codename=bookworm,label=Debian,"),
        "point releases are left to `cmdeploy run --upgrade`: {allowed}"
    );
    for timer in ["apt-daily.timer", "apt-daily-upgrade.timer"] {
        for (query, expected) in [("is-active", "active"), ("is-enabled", "enabled")] {
            let state = host.exec(&["systemctl", query, timer]).unwrap();
            let state = String::from_utf8_lossy(&state.stdout);
            assert_eq!(state.trim(), expected, "{timer} {query}");
        }
    }
    let cmdeploy = format!("{BUNDLE}/cmdeploy");
    let status = host
        .exec(&[
            &cmdeploy,
            "status",
            "--config",
            HOST_CONFIG,
            "--ssh-host",
            "@local",
        ])
        .unwrap();
    let status_text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{status_text}");
    for timer in ["apt-daily.timer", "apt-daily-upgrade.timer"] {
        assert!(
            status_text
                .lines()
                .any(|line| line.contains(timer) && line.contains("active")),
            "{timer} missing from cmdeploy status:\n{status_text}"
        );
    }

    // A newer nginx is published: the dry run lists it and changes nothing.
    let installed = installed_version(&host, "nginx");
    publish_newer_nginx(&root, &host, &installed);
    host.exec_ok(&["apt-get", "update", "-q"]).unwrap();
    let upgrade_line = format!("apt: upgrade nginx {installed} -> {installed}{BUMP}");
    let dry_run = host_deploy(&host, &["--upgrade", "--dry-run"]);
    let planned = format!("apt: would upgrade nginx {installed} -> {installed}{BUMP}");
    assert!(dry_run.contains(&planned), "{dry_run}");
    assert_eq!(installed_version(&host, "nginx"), installed);

    // The real run upgrades it and restarts nginx, which ran the replaced binary, alone.
    let before = start_stamps(&host);
    let run = host_deploy(&host, &["--upgrade"]);
    assert!(run.contains(&upgrade_line), "{run}");
    assert!(
        run.contains("nginx.service runs files an upgrade replaced"),
        "{run}"
    );
    assert_eq!(
        installed_version(&host, "nginx"),
        format!("{installed}{BUMP}")
    );
    let after = start_stamps(&host);
    let restarted: Vec<&str> = UNITS
        .iter()
        .copied()
        .filter(|unit| before[unit] != after[unit])
        .collect();
    assert_eq!(restarted, ["nginx.service"]);
    let nginx = host
        .exec(&["systemctl", "is-active", "nginx.service"])
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&nginx.stdout).trim(), "active");

    // Nothing runs replaced files any more, and nothing is left to upgrade.
    assert!(host_deploy(&host, &[]).contains("nothing to change"));
    let again = host_deploy(&host, &["--upgrade"]);
    assert!(
        again.contains("every package is up to date") && again.contains("nothing to change"),
        "{again}"
    );
}
