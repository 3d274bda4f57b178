//! Interrupting `cmdeploy run` at many points of a first configure and of a settings change,
//! by SIGKILL to cmdeploy or SIGINT to its whole process group (as Ctrl-C does): the next run
//! converges, the one after changes nothing, every secret is valid and owned as declared, and
//! nothing of the interrupted run is left. Each point runs on an overlay of a Debian 12 rootfs
//! with the install phase done. Needs root and the cached rootfs; ignored unless run with
//! `--include-ignored`.

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::*;

const FIRST: &str = "mail_domain = _chat.example.org\n";
const CHANGED: &str = "mail_domain = _chat.example.org\nmax_message_size = 1000000\n\
                       max_smtp_connections = 500\nmtail_address = 127.0.0.1\n";

/// An overlay mount: a fresh upper layer over read-only lower layers.
struct Overlay {
    merged: PathBuf,
    upper: PathBuf,
    dir: PathBuf,
}

impl Overlay {
    /// Mounts `lowers` (the first on top) under `scratch/NAME`.
    fn mount(lowers: &[&Path], name: &str) -> Overlay {
        let dir = scratch().join(format!("kill-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (merged, upper, work) = (dir.join("merged"), dir.join("upper"), dir.join("work"));
        for path in [&merged, &upper, &work] {
            std::fs::create_dir_all(path).unwrap();
        }
        let lowers: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lowers.join(":"),
            upper.display(),
            work.display()
        );
        let status = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(&merged)
            .status()
            .unwrap();
        assert!(status.success(), "mounting the overlay");
        Overlay { merged, upper, dir }
    }

    fn root(&self) -> &str {
        self.merged.to_str().unwrap()
    }

    /// Runs `argv` inside the merged tree.
    fn chroot(&self, argv: &[&str]) -> std::process::Output {
        Command::new("chroot")
            .arg(&self.merged)
            .args(argv)
            .output()
            .unwrap()
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.merged).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How a run is interrupted.
#[derive(Debug, Clone, Copy)]
enum Signal {
    /// SIGKILL to cmdeploy alone: its children (a key generator, apt) run on.
    Kill,
    /// SIGINT to cmdeploy's process group, as Ctrl-C in a terminal.
    Interrupt,
}

/// Whether a line of `cmdeploy run` announces a change (the summary's lines are indented).
fn is_change(line: &str) -> bool {
    !line.starts_with(' ') && !line.to_lowercase().starts_with("deploy ") && line.contains(": ")
}

/// Runs `cmdeploy run --phase configure` on `root` and interrupts it once it announced
/// `lines` changes (each is printed as it is about to be made); false if it ended before.
fn interrupted_run(root: &str, config: &Path, lines: usize, signal: Signal) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cmdeploy"))
        .args(["run", "--phase", "configure", "--root", root, "--config"])
        .arg(config)
        .env_remove("CHATMAIL_INI")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = 0;
    for line in stdout.lines() {
        let Ok(line) = line else { break };
        if !is_change(&line) {
            continue;
        }
        seen += 1;
        if seen == lines {
            let pid = child.id().to_string();
            let (flag, who) = match signal {
                Signal::Kill => ("-KILL", pid),
                Signal::Interrupt => ("-INT", format!("-{pid}")),
            };
            let status = Command::new("kill")
                .args([flag, "--", &who])
                .status()
                .unwrap();
            assert!(status.success(), "kill {flag} {who}");
            break;
        }
    }
    child.wait().unwrap();
    seen == lines
}

/// How many changes a complete configure of `config` announces on a copy of `lowers`.
fn lines_of_a_full_run(lowers: &[&Path], config: &Path) -> usize {
    let overlay = Overlay::mount(lowers, "count");
    let run = run_configure(overlay.root(), config);
    assert!(run.ok, "{}", run.all());
    run.stdout.lines().filter(|line| is_change(line)).count()
}

fn run_configure(root: &str, config: &Path) -> Run {
    let config = config.to_str().unwrap();
    cmdeploy(
        &[
            "run",
            "--phase",
            "configure",
            "--root",
            root,
            "--config",
            config,
        ],
        &[],
    )
}

/// After an interrupted run: the next converges, the one after is a no-op, the secrets are
/// valid and owned right, and nothing temporary is left.
fn assert_converges(overlay: &Overlay, config: &Path, point: &str) {
    let run = run_configure(overlay.root(), config);
    assert!(
        run.ok,
        "{point}: the run after did not converge:\n{}",
        run.all()
    );
    let again = run_configure(overlay.root(), config);
    assert!(
        again.ok && again.stdout.contains("nothing to change"),
        "{point}: the second run after is no no-op:\n{}",
        again.all()
    );
    let checks: [(&[&str], &str); 4] = [
        (
            &[
                "openssl",
                "pkey",
                "-noout",
                "-in",
                "/etc/dkimkeys/opendkim.private",
            ],
            "the DKIM key",
        ),
        (
            &[
                "openssl",
                "pkey",
                "-noout",
                "-in",
                "/etc/ssl/private/mailserver.key",
            ],
            "the TLS key",
        ),
        (
            &[
                "openssl",
                "x509",
                "-noout",
                "-in",
                "/etc/ssl/certs/mailserver.pem",
            ],
            "the TLS certificate",
        ),
        (
            &[
                "grep",
                "-qE",
                "^[0-9a-f]{64}$",
                chatmail_turn_component::SECRET,
            ],
            "the TURN secret",
        ),
    ];
    for (argv, what) in checks {
        let output = overlay.chroot(argv);
        assert!(output.status.success(), "{point}: {what} is not valid");
    }
    for (path, owner) in [
        ("/etc/dkimkeys/opendkim.private", "opendkim:opendkim"),
        ("/etc/dkimkeys/opendkim.txt", "opendkim:opendkim"),
        (chatmail_turn_component::SECRET, "vmail:vmail"),
    ] {
        let output = overlay.chroot(&["stat", "-c", "%U:%G", path]);
        let found = String::from_utf8_lossy(&output.stdout);
        assert_eq!(found.trim(), owner, "{point}: owner of {path}");
    }
    let leftovers = Command::new("find")
        .arg(&overlay.upper)
        .args([
            "-name",
            ".cmdeploy-*",
            "-o",
            "-path",
            "*/var/lib/cmdeploy/stage",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&leftovers.stdout),
        "",
        "{point}: left behind"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&format!("{}/proc", overlay.root())),
        "{point}: /proc stays mounted"
    );
}

/// Interrupts a configure of `config` on `lowers` at `points` evenly spread points, SIGKILL
/// and SIGINT taking turns, and checks that each converges.
fn interrupt_at_points(lowers: &[&Path], config: &Path, points: usize, name: &str) -> usize {
    let lines = lines_of_a_full_run(lowers, config);
    let mut interrupted = 0;
    for point in 0..points {
        let line = 1 + point * lines / points;
        let signal = match point % 2 {
            0 => Signal::Kill,
            _ => Signal::Interrupt,
        };
        let overlay = Overlay::mount(lowers, name);
        let label = format!("{name}: {signal:?} after line {line} of {lines}");
        if interrupted_run(overlay.root(), config, line, signal) {
            interrupted += 1;
        }
        assert_converges(&overlay, config, &label);
    }
    interrupted
}

#[test]
#[ignore = "slow: root, a Debian 12 rootfs"]
fn a_run_interrupted_anywhere_converges_and_keeps_every_secret_valid() {
    let installed = installed_root("kill");
    let dir = tempfile::tempdir().unwrap();
    let first = config_file(dir.path(), FIRST);
    let lowers = [installed.path.as_path()];
    let interrupted = interrupt_at_points(&lowers, &first, 30, "first");

    // The settings change starts from a configured tree: the upper layer of a full run.
    let configured = Overlay::mount(&lowers, "configured");
    assert!(run_configure(configured.root(), &first).ok);
    let _ = Command::new("umount").arg(&configured.merged).status();
    let changed_dir = tempfile::tempdir().unwrap();
    let changed = config_file(changed_dir.path(), CHANGED);
    let lowers = [configured.upper.as_path(), installed.path.as_path()];
    let interrupted = interrupted + interrupt_at_points(&lowers, &changed, 20, "change");
    assert!(
        interrupted >= 50,
        "only {interrupted} runs were interrupted before they ended"
    );
}
