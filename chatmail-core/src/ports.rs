//! Which process listens on which TCP port, read from `/proc` (no `ss` needed), for the
//! pre-flight check that no foreign daemon holds a port the relay needs.

use std::collections::{BTreeMap, BTreeSet};

/// Listening TCP ports (IPv4 and IPv6) and the name of a process holding each.
pub fn listeners() -> BTreeMap<u16, String> {
    let mut inodes: BTreeMap<u64, u16> = BTreeMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if let (Some(port), "0A", Ok(inode)) = (port, *state, inode.parse()) {
                inodes.insert(inode, port);
            }
        }
    }
    let mut holders = BTreeMap::new();
    let wanted: BTreeSet<u64> = inodes.keys().copied().collect();
    for process in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let link = link.to_string_lossy();
            let inode = link
                .strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(port) = inode
                .filter(|i| wanted.contains(i))
                .and_then(|i| inodes.get(&i))
            {
                let comm = std::fs::read_to_string(process.path().join("comm")).unwrap_or_default();
                holders
                    .entry(*port)
                    .or_insert_with(|| comm.trim().to_owned());
            }
        }
    }
    holders
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_listener_of_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let me = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert_eq!(listeners().get(&port).map(String::as_str), Some(me.trim()));
    }
}
