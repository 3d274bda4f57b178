//! Pinned `.deb` files on a real Debian 12 rootfs: installed with their dependencies from the
//! mirror, left alone while the version matches, upgraded (despite an apt pin that keeps the
//! archive's versions out) when the pinned version changes, and a wrong checksum installs nothing.
//! Slow: needs root, the cached rootfs (`cargo xtask rootfs`); ignored unless run with `--include-
//! ignored`.

#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::path::{Path, PathBuf};
use std::process::Command;

use chatmail_core::engine::{Engine, Phases, Planned};
use chatmail_core::plan::{
    Deb, Download, DownloadSource, File, ForeignBuild, InstallPlan, Owner, Restarts,
};
use chatmail_core::{Facts, Target};
use sha2::{Digest, Sha256};

const INSTALL: Phases = Phases {
    install: true,
    configure: false,
    activate: false,
};

/// A scratch directory under `target/` holding `root`, an unpacked copy of the cached
/// minbase rootfs.
fn minbase_root() -> (tempfile::TempDir, PathBuf) {
    let tarball =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/rootfs/bookworm-minbase.tar");
    assert!(tarball.exists(), "run `cargo xtask rootfs` first");
    let scratch =
        tempfile::tempdir_in(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")).unwrap();
    let root = scratch.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let untar = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-xf")
        .arg(&tarball)
        .status()
        .unwrap();
    assert!(untar.success());
    (scratch, root)
}

/// Builds `chatmail-probe` at `version` (depending on Debian's `tree`) into `dir`.
fn probe_deb(dir: &Path, version: &str) -> PathBuf {
    build_deb(dir, "chatmail-probe", version, "Depends: tree\n")
}

/// Builds `package` at `version` with extra control `fields` into `dir`.
fn build_deb(dir: &Path, package: &str, version: &str, fields: &str) -> PathBuf {
    let tree = dir.join(format!("{package}-{version}"));
    std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(tree.join("usr/share").join(package)).unwrap();
    std::fs::write(
        tree.join("DEBIAN/control"),
        format!(
            "Package: {package}\nVersion: {version}\nArchitecture: all\n\
             Maintainer: cmdeploy tests <root@localhost>\n{fields}\
             Description: a package of cmdeploy's engine tests\n"
        ),
    )
    .unwrap();
    std::fs::write(
        tree.join("usr/share").join(package).join("version"),
        version,
    )
    .unwrap();
    let deb = dir.join(format!("{package}_{version}_all.deb"));
    let built = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-b"])
        .arg(&tree)
        .arg(&deb)
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    deb
}

fn plan(deb: &Path, version: &str, sha256: &str) -> Vec<Planned> {
    let name = deb.file_name().unwrap().to_str().unwrap();
    let pin = "Package: chatmail-probe\nPin: version *\nPin-Priority: -1\n";
    vec![Planned {
        component: "probe",
        install: InstallPlan {
            debs: vec![Deb {
                package: "chatmail-probe".into(),
                version: version.into(),
                file: Download {
                    dest: Path::new("/var/cache/cmdeploy/debs").join(name),
                    source: DownloadSource::Local(deb.to_owned()),
                    sha256: sha256.into(),
                    mode: 0o644,
                },
            }],
            files: vec![File {
                path: "/etc/apt/preferences.d/pin-probe".into(),
                content: pin.into(),
                template: None,
                owner: Owner::root(),
                mode: 0o644,
                restarts: Restarts::Component,
                settled: false,
            }],
            ..InstallPlan::default()
        },
        configure: None,
        activate: None,
    }]
}

fn sha256(path: &Path) -> String {
    let digest = Sha256::digest(std::fs::read(path).unwrap());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Debian's `tree` wanted from the archive under an apt preference of `priority`, replacing
/// builds whose version carries `+test`.
fn archive_tree(priority: i32) -> Vec<Planned> {
    let mut install = InstallPlan {
        packages: vec!["tree".into()],
        foreign_builds: vec![ForeignBuild {
            package: "tree".into(),
            marker: "+test".into(),
        }],
        ..InstallPlan::default()
    };
    install.apt_files.push(File {
        path: "/etc/apt/preferences.d/pin-tree".into(),
        content: format!("Package: tree\nPin: release o=Debian\nPin-Priority: {priority}\n").into(),
        template: None,
        owner: Owner::root(),
        mode: 0o644,
        restarts: Restarts::Units(Vec::new()),
        settled: false,
    });
    vec![Planned {
        component: "tree",
        install,
        configure: None,
        activate: None,
    }]
}

fn install(root: &Path, plans: &[Planned]) -> anyhow::Result<usize> {
    let facts = Facts {
        arch: std::env::consts::ARCH.into(),
        deb_arch: chatmail_core::deb_arch(std::env::consts::ARCH).into(),
        systemd: false,
        container: false,
        binaries: "/nonexistent".into(),
        installed: Default::default(),
    };
    let target = Target::new(root, false)?;
    let mut engine = Engine::new(&target, &facts, false)?;
    engine.run(plans, INSTALL)?;
    Ok(engine.report.total())
}

fn installed_version(root: &Path, package: &str) -> String {
    let output = Command::new("chroot")
        .arg(root)
        .args([
            "dpkg-query",
            "-W",
            "-f=${Version} ${db:Status-Status}",
            package,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
#[ignore = "slow: root, a Debian 12 rootfs"]
fn pinned_debs_install_with_dependencies_and_upgrade_only_when_the_version_changes() {
    let (scratch, root) = minbase_root();
    let one = probe_deb(scratch.path(), "1.0");
    let two = probe_deb(scratch.path(), "2.0");

    let first = plan(&one, "1.0", &sha256(&one));
    assert_eq!(install(&root, &first).unwrap(), 3, "download, install, pin");
    assert_eq!(installed_version(&root, "chatmail-probe"), "1.0 installed");
    assert!(
        installed_version(&root, "tree").ends_with(" installed"),
        "its dependency came from the mirror"
    );
    assert_eq!(
        install(&root, &first).unwrap(),
        0,
        "the version matches: nothing to do"
    );

    // A wrong checksum stops before apt runs: 1.0 stays.
    let wrong = plan(&two, "2.0", &sha256(&one));
    let err = format!("{:#}", install(&root, &wrong).unwrap_err());
    assert!(err.contains("sha256"), "{err}");
    assert_eq!(installed_version(&root, "chatmail-probe"), "1.0 installed");

    let upgrade = plan(&two, "2.0", &sha256(&two));
    assert_eq!(install(&root, &upgrade).unwrap(), 2, "download, install");
    assert_eq!(installed_version(&root, "chatmail-probe"), "2.0 installed");
    assert_eq!(
        std::fs::read_to_string(root.join("usr/share/chatmail-probe/version")).unwrap(),
        "2.0"
    );
}

#[test]
#[ignore = "slow: root, a Debian 12 rootfs"]
fn a_foreign_build_is_replaced_by_the_archives_under_a_preference_above_1000() {
    let (scratch, root) = minbase_root();

    assert_eq!(
        install(&root, &archive_tree(1001)).unwrap(),
        2,
        "pin, package"
    );
    let debians = installed_version(&root, "tree");
    assert!(debians.ends_with(" installed") && !debians.contains("+test"));

    // Another build, newer than Debian's, from a .deb file under a pin against Debian's.
    let ours = build_deb(scratch.path(), "tree", "9.9+test1", "");
    let mut plans = plan(&ours, "9.9+test1", &sha256(&ours));
    plans[0].install.debs[0].package = "tree".into();
    assert_eq!(install(&root, &plans).unwrap(), 3, "download, install, pin");
    assert_eq!(installed_version(&root, "tree"), "9.9+test1 installed");
    let mut unmarked = archive_tree(1001);
    unmarked[0].install.foreign_builds.clear();
    assert_eq!(
        install(&root, &unmarked).unwrap(),
        0,
        "without a marker the installed build stays, whatever the pin says"
    );
    assert_eq!(installed_version(&root, "tree"), "9.9+test1 installed");

    // The marked build is replaced by Debian's, a downgrade; then nothing is left to do.
    assert_eq!(install(&root, &archive_tree(1001)).unwrap(), 1, "package");
    assert_eq!(installed_version(&root, "tree"), debians);
    assert_eq!(install(&root, &archive_tree(1001)).unwrap(), 0);
}
