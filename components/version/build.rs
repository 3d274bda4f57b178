//! Build script of `chatmail-version`: records the source revision cmdeploy is built from.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `git <args>` in this crate's directory, trimmed; `None` outside a git checkout.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

/// The files whose change moves the revision: HEAD, and the branch it names where that is
/// stored (its loose ref, or else packed-refs and the directory its loose ref would appear
/// in). Only existing paths: cargo reruns a build script on every build for a missing one.
fn watched() -> Vec<PathBuf> {
    let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) else {
        return Vec::new();
    };
    let mut paths = vec![Path::new(&git_dir).join("HEAD")];
    let common = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]);
    let branch = git(&["symbolic-ref", "--quiet", "HEAD"]);
    if let (Some(common), Some(branch)) = (common, branch) {
        let common = Path::new(&common);
        let loose = common.join(&branch);
        if loose.is_file() {
            paths.push(loose);
        } else {
            paths.push(common.join("packed-refs"));
            paths.extend(loose.parent().map(Path::to_path_buf));
        }
    }
    paths.retain(|path| path.exists());
    paths
}

fn main() {
    println!("cargo:rerun-if-env-changed=CMDEPLOY_SOURCE_REVISION");
    // A build from a source archive can name its revision; otherwise ask git.
    let revision = std::env::var("CMDEPLOY_SOURCE_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(|| git(&["rev-parse", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    for path in watched() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    if std::env::var_os("CMDEPLOY_SOURCE_REVISION").is_none() && revision == "unknown" {
        // Outside a checkout nothing can move the revision; watch this script alone.
        println!("cargo:rerun-if-changed=build.rs");
    }
    println!("cargo:rustc-env=CMDEPLOY_SOURCE_REVISION={revision}");
}
