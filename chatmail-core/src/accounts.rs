//! System users and groups on the target: looked up in its `/etc/passwd` and `/etc/group`,
//! created with `groupadd`/`useradd`.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow};

use crate::plan::User;
use crate::target::{Target, argv};

/// The target's users and groups, by name.
#[derive(Debug, Default)]
pub struct Accounts {
    users: BTreeMap<String, u32>,
    groups: BTreeMap<String, (u32, Vec<String>)>,
}

impl Accounts {
    pub fn read(target: &Target) -> Result<Accounts> {
        let mut accounts = Accounts::default();
        for line in read_lines(target, "/etc/passwd")? {
            let fields: Vec<&str> = line.split(':').collect();
            if let [name, _, uid, ..] = fields[..]
                && let Ok(uid) = uid.parse()
            {
                accounts.users.insert(name.to_owned(), uid);
            }
        }
        for line in read_lines(target, "/etc/group")? {
            let fields: Vec<&str> = line.split(':').collect();
            if let [name, _, gid, members] = fields[..]
                && let Ok(gid) = gid.parse()
            {
                let members = members
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect();
                accounts.groups.insert(name.to_owned(), (gid, members));
            }
        }
        Ok(accounts)
    }

    pub fn uid(&self, user: &str) -> Result<u32> {
        self.users
            .get(user)
            .copied()
            .ok_or_else(|| anyhow!("user {user:?} does not exist on the target"))
    }

    pub fn gid(&self, group: &str) -> Result<u32> {
        self.groups
            .get(group)
            .map(|(gid, _)| *gid)
            .ok_or_else(|| anyhow!("group {group:?} does not exist on the target"))
    }

    /// The commands that would bring `user` into being with all its groups (none if it exists).
    pub fn missing(&self, user: &User) -> Vec<Vec<String>> {
        let mut commands = Vec::new();
        for group in std::iter::once(&user.group).chain(&user.extra_groups) {
            if !self.groups.contains_key(group)
                && !commands
                    .iter()
                    .any(|c: &Vec<String>| c.last() == Some(group))
            {
                commands.push(argv(&["groupadd", "--system", group]));
            }
        }
        if !self.users.contains_key(&user.name) {
            let mut useradd = argv(&[
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ]);
            useradd.extend(["--home-dir".into(), user.home.display().to_string()]);
            useradd.extend(["--gid".into(), user.group.clone()]);
            if !user.extra_groups.is_empty() {
                useradd.extend(["--groups".into(), user.extra_groups.join(",")]);
            }
            useradd.push(user.name.clone());
            commands.push(useradd);
        } else {
            for group in &user.extra_groups {
                let member = self
                    .groups
                    .get(group)
                    .is_some_and(|(_, m)| m.contains(&user.name));
                if !member {
                    commands.push(argv(&[
                        "usermod", "--append", "--groups", group, &user.name,
                    ]));
                }
            }
        }
        commands
    }
}

fn read_lines(target: &Target, path: &str) -> Result<Vec<String>> {
    let full = target.path(path);
    match std::fs::read_to_string(&full) {
        Ok(text) => Ok(text.lines().map(str::to_owned).collect()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(err).with_context(|| format!("reading {}", full.display())),
    }
}
