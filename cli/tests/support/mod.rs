//! Helpers for the CLI tests: running the built `cmdeploy`, Debian rootfs copies for the slow
//! tests, and snapshots of a directory tree to prove that nothing changed.
//!
//! Slow tests (root, rootfs, booted hosts, namespaces, dockerd) are `#[ignore = "slow: ..."]`:
//! a plain `cargo test` lists them as ignored; `cargo test -- --include-ignored` runs them.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod containers;

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The output of one `cmdeploy` run.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Builds the relay's own programs (chatmail-turn, ...), which `cmdeploy run` installs from
/// beside the cmdeploy executable, once per test process in cmdeploy's profile: `cargo test`
/// builds only the binaries of the packages it tests.
pub fn build_relay_programs() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut command = xtask::cargo();
        command.args(["build", "--quiet", "--workspace", "--bins"]);
        let profile = Path::new(env!("CARGO_BIN_EXE_cmdeploy")).parent().unwrap();
        if profile.ends_with("release") {
            command.arg("--release");
        }
        assert!(
            command.status().unwrap().success(),
            "building the relay's programs"
        );
    });
}

/// Runs the built `cmdeploy` with `args`, with no `CHATMAIL_*` variables from the caller, and
/// the relay's programs built beside it.
pub fn cmdeploy(args: &[&str], env: &[(&str, &str)]) -> Run {
    build_relay_programs();
    cmdeploy_via(&[], args, env)
}

/// Runs the built `cmdeploy` with `args` through `prefix` (e.g. `ip netns exec NAME`), with no
/// `CHATMAIL_*` variables from the caller; the relay's programs are not needed.
pub fn cmdeploy_via(prefix: &[&str], args: &[&str], env: &[(&str, &str)]) -> Run {
    let binary = env!("CARGO_BIN_EXE_cmdeploy");
    let (program, rest) = match prefix.split_first() {
        Some((first, rest)) => (*first, [rest, &[binary]].concat()),
        None => (binary, Vec::new()),
    };
    let mut command = Command::new(program);
    command.args(rest).args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("CHATMAIL_") || key.starts_with("CMDEPLOY_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("cmdeploy runs");
    let run = Run {
        ok: status.success(),
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    eprintln!("$ cmdeploy {}\n{}", args.join(" "), run.all());
    run
}

/// Scratch space under `target/`, on the same file system as the cached rootfs.
/// Roots left by test processes that are gone are removed on first use.
pub fn scratch() -> PathBuf {
    static CLEANED: OnceLock<()> = OnceLock::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-roots");
    std::fs::create_dir_all(&dir).unwrap();
    CLEANED.get_or_init(|| {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.rsplit('-').next().unwrap_or_default();
            if !Path::new("/proc").join(pid).exists() {
                remove_tree(&entry.path());
            }
        }
    });
    dir
}

/// A directory the test owns, removed when dropped.
#[derive(Debug)]
pub struct Root {
    pub path: PathBuf,
}

impl Root {
    fn new(name: &str) -> Root {
        let path = scratch().join(format!("{name}-{}", std::process::id()));
        if path.exists() {
            remove_tree(&path);
        }
        std::fs::create_dir_all(&path).unwrap();
        Root { path }
    }

    pub fn str(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Runs `argv` inside the root (with /proc mounted) and returns its output.
    pub fn chroot(&self, argv: &[&str]) -> Output {
        let proc = self.path.join("proc");
        let mounted = !proc.join("self").exists()
            && Command::new("mount")
                .args(["-t", "proc", "proc"])
                .arg(&proc)
                .status()
                .unwrap()
                .success();
        let output = Command::new("chroot")
            .arg(&self.path)
            .args(argv)
            .env("LC_ALL", "C")
            .output()
            .unwrap();
        if mounted {
            Command::new("umount")
                .arg("--lazy")
                .arg(&proc)
                .status()
                .unwrap();
        }
        output
    }

    pub fn read(&self, path: &str) -> Vec<u8> {
        std::fs::read(self.path.join(path.trim_start_matches('/'))).unwrap()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        remove_tree(&self.path);
        let _ = std::fs::remove_file(self.path.with_extension("console.log"));
    }
}

fn remove_tree(path: &Path) {
    let proc = path.join("proc");
    if proc.join("self").exists() {
        let _ = Command::new("umount").arg("--lazy").arg(&proc).status();
    }
    let _ = std::fs::remove_dir_all(path);
}

/// The cached Debian 12 minbase tarball (`cargo xtask rootfs` builds it).
pub fn tarball() -> PathBuf {
    let path = xtask::rootfs::tarball();
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask rootfs` first",
        path.display()
    );
    path
}

/// A fresh copy of the cached Debian 12 minbase rootfs.
pub fn fresh_root(name: &str) -> Root {
    fresh_root_from(&tarball(), name)
}

/// A fresh copy of the rootfs in `tarball`.
pub fn fresh_root_from(tarball: &Path, name: &str) -> Root {
    let root = Root::new(name);
    let status = Command::new("tar")
        .arg("-C")
        .arg(&root.path)
        .arg("-xf")
        .arg(tarball)
        .status()
        .unwrap();
    assert!(status.success(), "extracting the rootfs");
    root
}

/// A copy of a rootfs on which `cmdeploy run --phase install` ran once (with no config at
/// all); the install happens once per test process.
pub fn installed_root(name: &str) -> Root {
    static INSTALLED: OnceLock<Root> = OnceLock::new();
    let installed = INSTALLED.get_or_init(|| {
        let root = fresh_root("installed");
        let run = cmdeploy(
            &[
                "run",
                "--phase",
                "install",
                "--root",
                root.str(),
                "--config",
                "/nonexistent/chatmail.ini",
            ],
            &[],
        );
        assert!(run.ok, "the install phase needs no config and succeeds");
        root
    });
    let copy = Root::new(name);
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", installed.str()))
        .arg(&copy.path)
        .status()
        .unwrap();
    assert!(status.success(), "copying the installed rootfs");
    copy
}

/// Where the deploy bundle (cmdeploy and the relay's programs) goes in a test host.
pub const BUNDLE: &str = xtask::bundle::HOST_DIR;
/// The settings file inside a test host.
pub const HOST_CONFIG: &str = xtask::bundle::HOST_CONFIG;

/// A booted host with the install phase done (in a chroot before boot: the host has no route
/// to the Debian mirror), the deploy bundle in place and `settings` as its config.
pub fn relay_host(name: &str, net: u8, settings: &str) -> (Root, xtask::host::Host) {
    let root = installed_bootable_root(name);
    let bundle = root.path.join(BUNDLE.trim_start_matches('/'));
    xtask::bundle::copy(Path::new(env!("CARGO_BIN_EXE_cmdeploy")), &bundle).unwrap();
    set_config(&root, settings);
    let host = xtask::host::Host::boot(&root.path, name, net).unwrap();
    (root, host)
}

/// A copy of the bootable rootfs with the install phase done (in a chroot: a booted host has
/// no route to the Debian mirror) with the delay-free Dovecot, ready to boot.
pub fn installed_bootable_root(name: &str) -> Root {
    let root = fresh_root_from(&xtask::rootfs::ensure_bootable().unwrap(), name);
    let debs = our_dovecot();
    let env = [(xtask::dovecot::DEBS_ENV, debs.to_str().unwrap())];
    let run = cmdeploy(&["run", "--phase", "install", "--root", root.str()], &env);
    assert!(run.ok);
    root
}

/// The directory of our delay-free Dovecot packages (`cargo xtask dovecot`), built once
/// unless cached.
pub fn our_dovecot() -> PathBuf {
    static DEBS: OnceLock<PathBuf> = OnceLock::new();
    DEBS.get_or_init(|| xtask::dovecot::ensure().expect("building the delay-free Dovecot"))
        .clone()
}

/// Makes a self-signed certificate for `name` in `root` with the root's openssl, as an operator
/// (or upstream's deploy) would: `cert` and `key` are paths inside the root.
pub fn make_certificate(root: &Root, cert: &str, key: &str, name: &str) {
    let subject = format!("/CN={name}");
    let made = root.chroot(&[
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-noenc",
        "-days",
        "1",
        "-keyout",
        key,
        "-out",
        cert,
        "-subj",
        &subject,
    ]);
    assert!(made.status.success(), "openssl req");
}

/// Writes the host's settings. Test relays accept new accounts whatever the load of this
/// shared machine, and run their own iroh relay (the bundle carries it).
pub fn set_config(root: &Root, settings: &str) {
    let text = format!("[params]\n{settings}max_load_1m = 1000\n");
    std::fs::write(root.path.join(HOST_CONFIG.trim_start_matches('/')), text).unwrap();
}

/// Runs the bundled `cmdeploy run` inside a booted host; fails the test if it fails, and
/// returns its output.
pub fn host_deploy(host: &xtask::host::Host, extra: &[&str]) -> String {
    let argv = xtask::bundle::host_run(extra);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let output = host.exec(&argv).unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("$ {}\n{text}", argv.join(" "));
    assert!(output.status.success(), "cmdeploy failed in the host");
    text
}

/// `cmdeploy run --phase install,configure` into a rootfs copy with `config`, plus `extra`
/// arguments.
pub fn root_deploy(root: &Root, config: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["run", "--phase", "install,configure", "--root", root.str()];
    args.extend(["--config", config.to_str().unwrap()]);
    args.extend(extra);
    cmdeploy(&args, &[])
}

/// Writes a chatmail.ini with `body` under `[params]` and returns its path.
pub fn config_file(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("chatmail.ini");
    std::fs::write(&path, format!("[params]\n{body}")).unwrap();
    path
}

/// Every file, directory and link below `root` with type, owner, mode and content hash.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, u32, u32, u64, u64)> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (u32, u32, u32, u64, u64)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mut hasher = DefaultHasher::new();
        if meta.is_file() {
            std::fs::read(&path).unwrap().hash(&mut hasher);
        } else if meta.file_type().is_symlink() {
            std::fs::read_link(&path).unwrap().hash(&mut hasher);
        }
        let rel = path.strip_prefix(root).unwrap().to_owned();
        out.insert(
            rel,
            (
                meta.mode(),
                meta.uid(),
                meta.gid(),
                meta.mtime() as u64,
                hasher.finish(),
            ),
        );
        if meta.is_dir() && path != root.join("proc") && path != root.join("dev") {
            walk(root, &path, out);
        }
    }
}

/// Two Delta Chat accounts register by logging in to the relay at `address`, exchange
/// encrypted messages both ways, and cleartext submission is refused. Returns the client's
/// JSON report.
pub fn delta_chat_exchange(address: &str, mail_domain: &str) -> String {
    let accounts = tempfile::tempdir().unwrap();
    let output = e2e_script("deltachat_exchange.py")
        .arg(address)
        .arg(mail_domain)
        .arg(accounts.path().join("accounts"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "Delta Chat exchange failed:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("\"cleartext_refused\": \"523"), "{report}");
    assert!(
        report.contains("\"appversions_clients\": [\"deltachat\"]"),
        "{report}"
    );
    eprintln!("delta chat: {report}");
    report
}

/// `python tests/e2e/<script>` with the Delta Chat client's virtualenv first on `PATH`.
fn e2e_script(script: &str) -> Command {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/venv/bin");
    assert!(
        venv.join("deltachat-rpc-server").exists(),
        "run scripts/setup-debian first"
    );
    let path = format!(
        "{}:{}",
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new(venv.join("python"));
    command
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/e2e")
                .join(script),
        )
        .env("PATH", path);
    command
}

/// An IMAP IDLE connection to a relay, held open by `tests/e2e/imap_idle.py`.
pub struct IdleConnection {
    child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl IdleConnection {
    /// Logs in as `addr` (creating the account) at `address` and waits until it idles.
    pub fn open(address: &str, addr: &str, password: &str) -> IdleConnection {
        use std::io::BufRead as _;
        let mut child = e2e_script("imap_idle.py")
            .args([address, addr, password])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "idling", "the IDLE connection did not start");
        IdleConnection { child, stdout }
    }

    /// Ends the IDLE: true when the server completes it on the same, still open connection.
    pub fn survived(mut self) -> bool {
        use std::io::{BufRead as _, Write as _};
        let mut stdin = self.child.stdin.take().unwrap();
        stdin.write_all(b"\n").unwrap();
        drop(stdin);
        let mut line = String::new();
        let _ = self.stdout.read_line(&mut line);
        self.child.wait().unwrap().success() && line.trim() == "alive"
    }
}
