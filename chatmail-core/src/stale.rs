//! Services still running files that an upgrade replaced: a process whose executable or a
//! mapped library is marked `(deleted)` runs the old code (a security fix in `libssl3` does
//! nothing for a daemon until it restarts). Read from `/proc`, as root, on a booted target.

use std::collections::BTreeSet;
use std::path::Path;

/// Where packages put programs and libraries; a deleted mapping elsewhere (a `memfd:`, a
/// file in `/tmp` or `/dev/shm`) is a program's own business, not an upgrade.
const PACKAGED: &[&str] = &["/usr/", "/lib", "/bin/", "/sbin/"];

/// The systemd units (from each process's cgroup) with a process that runs replaced files.
pub fn stale_units(proc: &Path) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(proc) else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|entry| {
            std::fs::read_to_string(entry.path().join("maps"))
                .is_ok_and(|maps| runs_replaced(&maps))
        })
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("cgroup")).ok())
        .filter_map(|cgroup| unit_of(&cgroup))
        .collect()
}

/// Whether a `/proc/<pid>/maps` text maps a packaged file that was deleted.
fn runs_replaced(maps: &str) -> bool {
    maps.lines().any(|line| {
        // address perms offset dev inode path: the path is the sixth field, and may hold spaces.
        let path = line.splitn(6, ' ').nth(5).unwrap_or("").trim_start();
        path.ends_with(" (deleted)") && PACKAGED.iter().any(|dir| path.starts_with(dir))
    })
}

/// The unit a process belongs to, from its `/proc/<pid>/cgroup` (`0::/system.slice/x.service`).
fn unit_of(cgroup: &str) -> Option<String> {
    let path = cgroup.lines().find_map(|line| line.strip_prefix("0::"))?;
    let unit = path.rsplit('/').find(|part| {
        [".service", ".socket", ".scope"]
            .iter()
            .any(|suffix| part.ends_with(suffix))
    })?;
    Some(unit.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_deleted_packaged_files_count() {
        let fresh = "55d0c000-55d0d000 r-xp 00000000 08:01 1234   /usr/sbin/nginx\n\
                     7f00-7f10 r-xp 00000000 08:01 99 /usr/lib/x86_64-linux-gnu/libssl.so.3\n";
        let own = "7f00-7f10 rw-s 00000000 00:01 77 /memfd:pool (deleted)\n\
                   7f10-7f20 rw-s 00000000 00:1a 78 /dev/shm/x (deleted)\n";
        let upgraded =
            "7f00-7f10 r-xp 00000000 08:01 99 /usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)\n";
        assert!(!runs_replaced(fresh));
        assert!(!runs_replaced(own));
        assert!(runs_replaced(upgraded));
    }

    #[test]
    fn the_unit_is_the_last_unit_in_the_cgroup_path() {
        assert_eq!(
            unit_of("0::/system.slice/postfix@-.service\n").as_deref(),
            Some("postfix@-.service")
        );
        assert_eq!(
            unit_of("0::/system.slice/dovecot.service/sub\n").as_deref(),
            Some("dovecot.service")
        );
        assert_eq!(unit_of("0::/user.slice\n"), None);
    }
}
