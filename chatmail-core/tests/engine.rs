//! The engine on a directory target: files, directories, downloads (from a real HTTP server on
//! 127.0.0.1), line and package removals, dry runs, pending restarts, watched files, attempts,
//! validation before commit, change commands owed across runs, moves of what earlier releases
//! kept elsewhere, and the pre-flight checks against this machine's real listeners and addresses.

#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chatmail_core::engine::{Engine, Phases, Planned};
use chatmail_core::plan::{
    ActivatePlan, Attempt, ConfigurePlan, Dir, Download, DownloadSource, File, InstallPlan,
    LineRemoval, LocalAddress, Move, OnChange, Owner, PackageRemoval, Port, Restarts, Validator,
};
use chatmail_core::report::Kind;
use chatmail_core::{Facts, Target};

/// A target directory whose `root` user is the user running the test.
fn target_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let meta = std::fs::metadata(dir.path()).unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(
        dir.path().join("etc/passwd"),
        format!("root:x:{}:{}::/root:/bin/sh\n", meta.uid(), meta.gid()),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("etc/group"),
        format!("root:x:{}:\n", meta.gid()),
    )
    .unwrap();
    dir
}

fn facts() -> Facts {
    Facts {
        arch: "x86_64".into(),
        deb_arch: "amd64".into(),
        systemd: false,
        container: false,
        binaries: "/nonexistent".into(),
        installed: Default::default(),
    }
}

fn run(root: &Path, plans: &[Planned], phases: Phases, dry_run: bool) -> anyhow::Result<usize> {
    run_with(root, plans, phases, dry_run, &facts())
}

fn run_with(
    root: &Path,
    plans: &[Planned],
    phases: Phases,
    dry_run: bool,
    facts: &Facts,
) -> anyhow::Result<usize> {
    let target = Target::new(root, false)?;
    let mut engine = Engine::new(&target, facts, dry_run)?;
    engine.run(plans, phases)?;
    Ok(engine.report.total())
}

const INSTALL: Phases = Phases {
    install: true,
    configure: false,
    activate: false,
};
const CONFIGURE: Phases = Phases {
    install: false,
    configure: true,
    activate: false,
};

/// Serves `body` on 127.0.0.1 to any number of requests, counting them.
fn serve(body: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/relay-binary", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            counter.fetch_add(1, Ordering::SeqCst);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.write_all(&body));
        }
    });
    (url, hits)
}

fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn download_plan(source: DownloadSource, sha256: String) -> Vec<Planned> {
    vec![Planned {
        component: "relay",
        install: InstallPlan {
            downloads: vec![Download {
                dest: "/usr/local/bin/relay".into(),
                source,
                sha256,
                mode: 0o755,
            }],
            ..InstallPlan::default()
        },
        configure: None,
        activate: None,
    }]
}

#[test]
fn downloads_are_verified_installed_and_not_fetched_again() {
    let dir = target_dir();
    let binary = b"\x7fELF pretend binary".to_vec();
    let (url, hits) = serve(binary.clone());
    let installed = dir.path().join("usr/local/bin/relay");

    let plans = download_plan(DownloadSource::Url(url.clone()), sha256(&binary));
    assert_eq!(run(dir.path(), &plans, INSTALL, false).unwrap(), 1);
    assert_eq!(std::fs::read(&installed).unwrap(), binary);
    assert_eq!(
        std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    assert_eq!(
        run(dir.path(), &plans, INSTALL, false).unwrap(),
        0,
        "unchanged file: no change"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1, "and not fetched again");

    let wrong = "0".repeat(64);
    let plans = download_plan(DownloadSource::Url(url.clone()), wrong.clone());
    let err = format!("{:#}", run(dir.path(), &plans, INSTALL, false).unwrap_err());
    assert!(
        err.contains(&format!(
            "sha256 mismatch for {url}: expected {wrong}, got {}",
            sha256(&binary)
        )),
        "{err}"
    );
    assert!(err.contains("/usr/local/bin/relay left unchanged"), "{err}");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        binary,
        "the previous binary stays"
    );
}

#[test]
fn local_files_are_installed_by_their_checksum() {
    let dir = target_dir();
    let binary = b"a program built elsewhere".to_vec();
    let local = dir.path().join("relay.local");
    std::fs::write(&local, &binary).unwrap();

    let plans = download_plan(DownloadSource::Local(local.clone()), sha256(&binary));
    assert_eq!(run(dir.path(), &plans, INSTALL, false).unwrap(), 1);
    assert_eq!(
        std::fs::read(dir.path().join("usr/local/bin/relay")).unwrap(),
        binary
    );
    assert_eq!(run(dir.path(), &plans, INSTALL, false).unwrap(), 0);

    std::fs::write(&local, b"changed since it was planned").unwrap();
    std::fs::remove_file(dir.path().join("usr/local/bin/relay")).unwrap();
    let err = format!("{:#}", run(dir.path(), &plans, INSTALL, false).unwrap_err());
    assert!(
        err.contains(&format!("sha256 mismatch for {}", local.display())),
        "{err}"
    );
    assert!(!dir.path().join("usr/local/bin/relay").exists());
}

fn config_plan(content: &str) -> Vec<Planned> {
    let file = |path: &str, restarts| File {
        path: path.into(),
        content: content.as_bytes().to_vec(),
        template: None,
        owner: Owner::root(),
        mode: 0o640,
        restarts,
        settled: false,
    };
    vec![Planned {
        component: "relay",
        install: InstallPlan::default(),
        configure: Some(ConfigurePlan {
            files: vec![
                file("/etc/relay/relay.conf", Restarts::Component),
                file(
                    "/etc/systemd/system/relay.service",
                    Restarts::Units(vec!["other.service".into()]),
                ),
            ],
            ..ConfigurePlan::default()
        }),
        activate: None,
    }]
}

#[test]
fn configure_writes_changed_files_and_owes_their_restarts() {
    let dir = target_dir();
    let plans = config_plan("listen = 1\n");

    let before = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(
        run(dir.path(), &plans, CONFIGURE, true).unwrap(),
        2,
        "dry run plans two files"
    );
    assert!(
        !dir.path().join("etc/relay").exists(),
        "a dry run writes nothing"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), before);

    assert_eq!(run(dir.path(), &plans, CONFIGURE, false).unwrap(), 2);
    let conf = dir.path().join("etc/relay/relay.conf");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "listen = 1\n");
    assert_eq!(std::fs::metadata(&conf).unwrap().mode() & 0o777, 0o640);
    let pending =
        std::fs::read_to_string(dir.path().join("var/lib/cmdeploy/pending-restarts")).unwrap();
    assert_eq!(
        pending,
        "daemon-reload\ncomponent relay\nunit other.service\n"
    );

    assert_eq!(
        run(dir.path(), &plans, CONFIGURE, false).unwrap(),
        0,
        "identical re-run"
    );

    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(
        run(dir.path(), &config_plan("listen = 1\n"), CONFIGURE, false).unwrap(),
        1,
        "mode drift is repaired"
    );
    assert_eq!(std::fs::metadata(&conf).unwrap().mode() & 0o777, 0o640);
}

#[test]
fn without_systemd_activation_keeps_what_is_owed() {
    let dir = target_dir();
    run(dir.path(), &config_plan("a\n"), CONFIGURE, false).unwrap();
    let pending = dir.path().join("var/lib/cmdeploy/pending-restarts");
    let owed = std::fs::read_to_string(&pending).unwrap();
    let activate = Phases {
        install: false,
        configure: false,
        activate: true,
    };
    assert_eq!(
        run(dir.path(), &config_plan("a\n"), activate, false).unwrap(),
        0
    );
    assert_eq!(std::fs::read_to_string(&pending).unwrap(), owed);
}

#[test]
fn a_changed_file_owes_a_restart_to_the_components_watching_it() {
    let dir = target_dir();
    let mut plans = config_plan("shared settings\n");
    plans.push(Planned {
        component: "reader",
        install: InstallPlan::default(),
        configure: Some(ConfigurePlan {
            watches: vec!["/etc/relay/relay.conf".into()],
            ..ConfigurePlan::default()
        }),
        activate: None,
    });
    run(dir.path(), &plans, CONFIGURE, false).unwrap();
    let pending =
        std::fs::read_to_string(dir.path().join("var/lib/cmdeploy/pending-restarts")).unwrap();
    assert!(pending.contains("component reader\n"), "{pending}");
}

/// Copies `programs` and the libraries `ldd` names for them into `root`, so that commands run
/// there through `chroot`.
fn install_programs(root: &Path, programs: &[&str]) {
    for program in programs {
        let output = std::process::Command::new("ldd")
            .arg(program)
            .output()
            .unwrap();
        let libs = String::from_utf8(output.stdout).unwrap();
        let paths = libs
            .split_whitespace()
            .filter(|word| word.starts_with('/'))
            .chain([*program]);
        for path in paths {
            let dest = root.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(path, dest).unwrap();
        }
    }
}

#[test]
#[ignore = "needs root: commands run through chroot"]
fn attempts_run_while_their_condition_holds_and_only_warn_on_failure() {
    let dir = target_dir();
    install_programs(dir.path(), &["/bin/true", "/bin/false"]);
    std::fs::create_dir_all(dir.path().join("run/standin")).unwrap();
    let plans = |first: &str| {
        let attempt = |argv: &str| Attempt {
            argv: vec![argv.to_owned()],
            while_exists: "/run/standin".into(),
            hint: "try again later".into(),
        };
        vec![Planned {
            component: "acme",
            install: InstallPlan::default(),
            configure: Some(ConfigurePlan::default()),
            activate: Some(ActivatePlan {
                attempts: vec![attempt(first), attempt("/bin/true")],
                ..ActivatePlan::default()
            }),
        }]
    };
    let activate = Phases {
        install: false,
        configure: false,
        activate: true,
    };
    let target = Target::new(dir.path(), false).unwrap();
    let facts = Facts {
        systemd: true,
        ..facts()
    };

    let mut engine = Engine::new(&target, &facts, false).unwrap();
    engine.run(&plans("/bin/false"), activate).unwrap();
    assert_eq!(
        engine.report.total(),
        1,
        "the failure skips the second attempt"
    );
    assert_eq!(engine.report.warnings().len(), 1);
    assert!(engine.report.warnings()[0].contains("try again later"));

    let mut engine = Engine::new(&target, &facts, false).unwrap();
    engine.run(&plans("/bin/true"), activate).unwrap();
    assert_eq!(engine.report.total(), 2);
    assert!(engine.report.warnings().is_empty());

    std::fs::remove_dir(dir.path().join("run/standin")).unwrap();
    let mut engine = Engine::new(&target, &facts, false).unwrap();
    engine.run(&plans("/bin/false"), activate).unwrap();
    assert_eq!(
        engine.report.total(),
        0,
        "nothing runs once the condition is gone"
    );
}

#[test]
fn what_a_run_no_longer_declares_is_removed_and_what_moved_is_kept() {
    let dir = target_dir();
    let manifest = dir.path().join("var/lib/cmdeploy/manifest");
    let unit = dir.path().join("etc/systemd/system/relay.service");
    run(dir.path(), &config_plan("v1\n"), CONFIGURE, false).unwrap();
    assert_eq!(
        std::fs::read_to_string(&manifest).unwrap(),
        "relay file /etc/relay/relay.conf\nrelay file /etc/systemd/system/relay.service\n"
    );

    // The unit file is no longer declared; a unit goes in activation, once stopped.
    let mut plans = config_plan("v1\n");
    plans[0].configure.as_mut().unwrap().files.truncate(1);
    assert_eq!(run(dir.path(), &plans, CONFIGURE, false).unwrap(), 0);
    assert!(unit.exists());
    let all = Phases {
        install: false,
        ..Phases::ALL
    };
    assert_eq!(
        run(dir.path(), &plans, all, true).unwrap(),
        1,
        "the dry run shows it"
    );
    assert!(unit.exists());
    assert_eq!(run(dir.path(), &plans, all, false).unwrap(), 1);
    assert!(!unit.exists());
    assert_eq!(
        std::fs::read_to_string(&manifest).unwrap(),
        "relay file /etc/relay/relay.conf\n"
    );

    // A plain file goes in configure; one that moved to another component stays.
    let conf = dir.path().join("etc/relay/relay.conf");
    let mut plans = config_plan("v1\n");
    plans[0].configure.as_mut().unwrap().files.clear();
    plans[0].component = "renamed";
    assert_eq!(run(dir.path(), &plans, CONFIGURE, false).unwrap(), 0);
    assert!(conf.exists(), "not relay's: its manifest entries stay");
    let mut moved = config_plan("v1\n");
    moved[0].configure.as_mut().unwrap().files.truncate(1);
    plans[0].component = "relay";
    plans.extend(moved.into_iter().map(|p| Planned {
        component: "other",
        ..p
    }));
    assert_eq!(run(dir.path(), &plans, CONFIGURE, false).unwrap(), 0);
    assert!(conf.exists());
    assert_eq!(
        std::fs::read_to_string(&manifest).unwrap(),
        "other file /etc/relay/relay.conf\n"
    );
    plans.truncate(1);
    assert_eq!(
        run(dir.path(), &plans, CONFIGURE, false).unwrap(),
        0,
        "other's now"
    );
    plans[0].component = "other";
    assert_eq!(run(dir.path(), &plans, CONFIGURE, false).unwrap(), 1);
    assert!(!conf.exists());
}

/// `relay` moving `/home/data/[old]` to `/home/data/new`, a directory it declares.
fn move_plan() -> Vec<Planned> {
    vec![Planned {
        component: "relay",
        install: InstallPlan::default(),
        configure: Some(ConfigurePlan {
            moves: vec![Move {
                from: "/home/data/[old]".into(),
                to: "/home/data/new".into(),
                quiesce: vec!["relay.service".into()],
            }],
            dirs: vec![Dir {
                path: "/home/data/new".into(),
                owner: Owner::root(),
                mode: 0o700,
            }],
            ..ConfigurePlan::default()
        }),
        activate: None,
    }]
}

/// Every path below `root` with its inode, mode and content (files).
fn tree(root: &Path) -> Vec<(String, u64, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            let path = entry.path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            let content = match meta.is_file() {
                true => std::fs::read(&path).unwrap(),
                false => Vec::new(),
            };
            out.push((name, meta.ino(), meta.mode(), content));
            if meta.is_dir() {
                todo.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_move_renames_once_shows_in_the_dry_run_and_refuses_when_both_ends_exist() {
    let dir = target_dir();
    let data = dir.path().join("home/data");
    let (old, new) = (data.join("[old]"), data.join("new"));
    std::fs::create_dir_all(old.join("a@[old]")).unwrap();
    std::fs::write(old.join("a@[old]/password"), "secret\n").unwrap();
    for (path, mode) in [(&old.join("a@[old]/password"), 0o600), (&old, 0o700)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let before = tree(&old);
    let plans = move_plan();

    // The dry run shows the move and nothing else: the directory is there, moved.
    let (target, facts) = (Target::new(dir.path(), false).unwrap(), facts());
    let mut engine = Engine::new(&target, &facts, true).unwrap();
    engine.run(&plans, CONFIGURE).unwrap();
    let texts: Vec<&str> = engine.report.actions().iter().map(|a| &*a.text).collect();
    assert_eq!(
        texts,
        ["move /home/data/[old] to /home/data/new"],
        "no directory to create: the moved one is it"
    );
    assert!(matches!(
        &engine.report.actions()[0].kind,
        Kind::Move { from, to } if from == Path::new("/home/data/[old]") && to == Path::new("/home/data/new")
    ));
    assert!(
        !new.exists() && tree(&old) == before,
        "a dry run moves nothing"
    );

    // The move: one rename (same inodes, modes and content), then nothing to do.
    assert_eq!(run(dir.path(), &plans, CONFIGURE, false).unwrap(), 1);
    assert!(!old.exists());
    assert_eq!(tree(&new), before);
    assert_eq!(std::fs::metadata(&new).unwrap().mode() & 0o7777, 0o700);
    assert_eq!(run(dir.path(), &plans, CONFIGURE, false).unwrap(), 0);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("var/lib/cmdeploy/pending-restarts"))
            .unwrap_or_default(),
        "",
        "no running systemd: nothing was stopped, nothing is owed"
    );

    // Both there: refused before anything changes, naming both.
    std::fs::create_dir(&old).unwrap();
    let files = config_plan("v1\n");
    let mut both = move_plan();
    both[0].configure.as_mut().unwrap().files = files[0].configure.clone().unwrap().files;
    for dry_run in [true, false] {
        let err = run(dir.path(), &both, CONFIGURE, dry_run).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("both /home/data/[old]") && text.contains("and /home/data/new"),
            "{text}"
        );
    }
    assert!(old.exists() && tree(&new) == before);
    assert!(
        !dir.path().join("etc/relay").exists(),
        "no file was written"
    );
}

/// `relay` with one file, checked by `check` and followed by `command` when it changes.
fn checked_plan(content: &str, check: &str, command: &str) -> Vec<Planned> {
    let mut plans = config_plan(content);
    let configure = plans[0].configure.as_mut().unwrap();
    configure.files.truncate(1);
    configure.validators = vec![Validator {
        argv: vec![check.to_owned()],
        input: "/etc/relay/relay.conf".into(),
        strict_stderr: false,
    }];
    configure.on_change = vec![OnChange {
        path: "/etc/relay/relay.conf".into(),
        argv: vec![command.to_owned()],
    }];
    plans
}

#[test]
#[ignore = "needs root: commands run through chroot"]
fn a_failed_validation_leaves_the_live_file_alone_and_a_failed_change_command_is_redone() {
    let dir = target_dir();
    install_programs(dir.path(), &["/bin/true", "/bin/false"]);
    let conf = dir.path().join("etc/relay/relay.conf");
    let pending = dir.path().join("var/lib/cmdeploy/pending-restarts");
    let owed = || std::fs::read_to_string(&pending).unwrap_or_default();
    // A new file is in place while it is checked, and gone again when the check fails.
    let plans = checked_plan("v1\n", "/bin/false", "/bin/true");
    run(dir.path(), &plans, CONFIGURE, false).unwrap_err();
    assert!(!conf.exists());
    assert_eq!(owed(), "", "a failed validation owes nothing");
    run(
        dir.path(),
        &checked_plan("v1\n", "/bin/true", "/bin/true"),
        CONFIGURE,
        false,
    )
    .unwrap();
    std::fs::remove_file(&pending).unwrap();
    let mtime = std::fs::metadata(&conf).unwrap().mtime_nsec();

    let err = run(
        dir.path(),
        &checked_plan("v2\n", "/bin/false", "/bin/true"),
        CONFIGURE,
        false,
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("validation failed: `/bin/false /etc/relay/relay.conf`"));
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "v1\n");
    assert_eq!(std::fs::metadata(&conf).unwrap().mtime_nsec(), mtime);
    assert_eq!(owed(), "", "a failed validation owes nothing");
    assert!(!dir.path().join("var/lib/cmdeploy/stage").exists());

    // The change command fails after the file was written: it stays owed, with the restart.
    run(
        dir.path(),
        &checked_plan("v2\n", "/bin/true", "/bin/false"),
        CONFIGURE,
        false,
    )
    .unwrap_err();
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "v2\n");
    assert_eq!(
        owed(),
        "component relay\ncommand relay /etc/relay/relay.conf\n"
    );
    // The file no longer differs, yet the next run still runs the command, once.
    let plans = checked_plan("v2\n", "/bin/true", "/bin/true");
    assert_eq!(run(dir.path(), &plans, CONFIGURE, false).unwrap(), 1);
    assert_eq!(owed(), "component relay\n");
    assert_eq!(run(dir.path(), &plans, CONFIGURE, false).unwrap(), 0);
}

fn install_plan(component: &'static str, install: InstallPlan) -> Planned {
    Planned {
        component,
        install,
        configure: None,
        activate: None,
    }
}

#[test]
fn install_files_owe_what_their_declaration_says_as_configure_files_do() {
    let dir = target_dir();
    let mut plan = config_plan("drop-in\n").remove(0);
    let files = plan.configure.take().unwrap().files;
    let planned = install_plan(
        "relay",
        InstallPlan {
            files,
            ..InstallPlan::default()
        },
    );
    assert_eq!(run(dir.path(), &[planned], INSTALL, false).unwrap(), 2);
    let pending =
        std::fs::read_to_string(dir.path().join("var/lib/cmdeploy/pending-restarts")).unwrap();
    assert_eq!(
        pending, "daemon-reload\ncomponent relay\nunit other.service\n",
        "the unit file owes what it names, not its component's restart"
    );
}

#[test]
fn obsolete_lines_are_removed_keeping_the_rest_the_owner_and_the_mode() {
    let dir = target_dir();
    let obs = "deb [signed-by=/etc/apt/keyrings/obs.gpg] https://obs.example/Debian_12/ ./";
    let sources = dir.path().join("etc/apt/sources.list");
    std::fs::create_dir_all(sources.parent().unwrap()).unwrap();
    std::fs::write(
        &sources,
        format!("deb http://deb.debian.org/debian bookworm main\n{obs}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&sources, std::fs::Permissions::from_mode(0o640)).unwrap();
    let removal = |path: &str| LineRemoval {
        path: path.into(),
        line: obs.into(),
    };
    let plans = [install_plan(
        "legacy",
        InstallPlan {
            line_removals: vec![removal("/etc/apt/sources.list"), removal("/etc/absent")],
            ..InstallPlan::default()
        },
    )];

    assert_eq!(run(dir.path(), &plans, INSTALL, true).unwrap(), 1);
    assert!(
        std::fs::read_to_string(&sources).unwrap().contains(obs),
        "dry run"
    );
    assert_eq!(run(dir.path(), &plans, INSTALL, false).unwrap(), 1);
    assert_eq!(
        std::fs::read_to_string(&sources).unwrap(),
        "deb http://deb.debian.org/debian bookworm main\n"
    );
    assert_eq!(std::fs::metadata(&sources).unwrap().mode() & 0o777, 0o640);
    assert!(
        !dir.path().join("etc/absent").exists(),
        "a missing file stays missing"
    );
    assert_eq!(
        run(dir.path(), &plans, INSTALL, false).unwrap(),
        0,
        "re-run"
    );
}

#[test]
fn only_packages_on_the_target_are_removed_and_never_wanted_ones() {
    let dir = target_dir();
    let status = dir.path().join("var/lib/dpkg/status");
    std::fs::create_dir_all(status.parent().unwrap()).unwrap();
    std::fs::write(
        &status,
        "Package: rspamd\nStatus: install ok installed\n\n\
         Package: resolvconf\nStatus: deinstall ok config-files\n\n\
         Package: unbound-anchor\nStatus: deinstall ok config-files\n",
    )
    .unwrap();
    let removal = |name: &str, purge| PackageRemoval {
        name: name.into(),
        purge,
    };
    let plans = [
        install_plan(
            "legacy",
            InstallPlan {
                remove_packages: vec![
                    removal("rspamd", false),
                    removal("unbound-anchor", false),
                    removal("exim4", false),
                ],
                ..InstallPlan::default()
            },
        ),
        install_plan(
            "unbound",
            InstallPlan {
                remove_packages: vec![removal("resolvconf", true)],
                ..InstallPlan::default()
            },
        ),
    ];
    let target = Target::new(dir.path(), false).unwrap();
    let facts = facts();
    let mut engine = Engine::new(&target, &facts, true).unwrap();
    engine.run(&plans, INSTALL).unwrap();
    assert_eq!(
        engine.report.count("legacy"),
        1,
        "rspamd only: unbound-anchor is already removed, exim4 absent"
    );
    assert_eq!(
        engine.report.count("unbound"),
        1,
        "purging reaches the configuration files left by a removal"
    );

    let mut wanting = plans;
    wanting[1].install.packages.push("rspamd".into());
    let err = format!(
        "{:#}",
        run(dir.path(), &wanting, INSTALL, true).unwrap_err()
    );
    assert!(
        err.contains("legacy: package rspamd is to be removed, but unbound installs it"),
        "{err}"
    );
}

/// A plan that writes one file in configure (no unit file: activation runs no command) and
/// holds `port` for the names in `allowed`.
fn port_plan(port: u16, allowed: &[&str]) -> Vec<Planned> {
    let mut plans = config_plan("listen = 1\n");
    if let Some(configure) = &mut plans[0].configure {
        configure.files.truncate(1);
    }
    plans[0].activate = Some(ActivatePlan {
        ports: vec![Port {
            port,
            allowed: allowed.iter().map(|a| (*a).to_owned()).collect(),
        }],
        ..ActivatePlan::default()
    });
    plans
}

#[test]
fn a_foreign_listener_on_a_declared_port_fails_the_run_before_anything_changes() {
    // This test process is the foreign daemon: it really listens, and the engine finds it
    // through /proc like any other holder.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let me = std::fs::read_to_string("/proc/self/comm").unwrap();
    let me = me.trim();
    let host = Facts {
        systemd: true,
        ..facts()
    };
    let dir = target_dir();
    let conf = dir.path().join("etc/relay/relay.conf");

    let err = run_with(
        dir.path(),
        &port_plan(port, &["master", "smtpd"]),
        Phases::ALL,
        false,
        &host,
    )
    .unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        format!(
            "port {port} is occupied by {me}, but relay needs it (for master or smtpd); \
             stop {me} first"
        )
    );
    assert!(!conf.exists(), "nothing changed before the check");

    let in_container = Facts {
        container: true,
        ..host.clone()
    };
    let plans = port_plan(port, &["master", "smtpd"]);
    assert_eq!(
        run_with(dir.path(), &plans, Phases::ALL, false, &in_container).unwrap(),
        1,
        "containers skip the check: their ports are the engine's business"
    );

    let allowed = port_plan(port, &["master", me]);
    assert_eq!(
        run_with(dir.path(), &allowed, Phases::ALL, false, &host).unwrap(),
        0,
        "an allowed holder passes (and the files are already in place)"
    );
    drop(listener);
}

#[test]
fn an_address_this_host_does_not_have_fails_the_run_before_anything_changes() {
    let host = Facts {
        systemd: true,
        ..facts()
    };
    let plan_binding = |address: &str| {
        let mut plans = config_plan("listen = 1\n");
        if let Some(configure) = &mut plans[0].configure {
            configure.files.truncate(1);
        }
        plans[0].activate = Some(ActivatePlan {
            addresses: vec![LocalAddress {
                address: address.parse().unwrap(),
                setting: "mtail_address".into(),
            }],
            ..ActivatePlan::default()
        });
        plans
    };
    let dir = target_dir();
    let conf = dir.path().join("etc/relay/relay.conf");

    // TEST-NET-1 (RFC 5737) is never assigned to a real interface.
    let err = run_with(
        dir.path(),
        &plan_binding("192.0.2.1"),
        Phases::ALL,
        false,
        &host,
    )
    .unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.starts_with("mtail_address = 192.0.2.1 is not an address of this host ("),
        "{err}"
    );
    assert!(err.ends_with("is its interface (a VPN?) up?"), "{err}");
    assert!(!conf.exists(), "nothing changed before the check");

    let local = plan_binding("127.0.0.1");
    assert_eq!(
        run_with(dir.path(), &local, Phases::ALL, false, &host).unwrap(),
        1
    );
}
