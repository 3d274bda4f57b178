//! How a run looks on the terminal: each action as the engine reports it (diffs in a dry run
//! or with `-v`), warnings and notices, the closing summary per component, and the totals a
//! fleet run reads back from a relay's output.

use chatmail_core::report::{Event, Kind, Report};

/// What a dry run says before each action.
const WOULD: &str = "would ";

/// The observer that prints a run as it goes.
pub fn printer(dry_run: bool, verbose: bool) -> impl FnMut(Event<'_>) {
    let prefix = if dry_run { WOULD } else { "" };
    move |event| match event {
        Event::Action(action) => {
            println!("{}: {prefix}{}", action.component, action.text);
            if let Some(diff) = action.diff.as_ref().filter(|_| dry_run || verbose) {
                print!("{diff}");
            }
        }
        Event::Warning(text) => eprintln!("{text}"),
        Event::Notice(text) => println!("{text}"),
    }
}

/// The last line of a run: how many actions it had (or would have).
pub fn outcome(total: usize, dry_run: bool) -> String {
    match (total, dry_run) {
        (0, _) => NOTHING.to_owned(),
        (n, true) => format!("{DRY_RUN}{n} change(s) planned, nothing changed"),
        (n, false) => format!("{COMPLETED}{n} change(s)"),
    }
}

const NOTHING: &str = "nothing to change";
const DRY_RUN: &str = "dry run: ";
const COMPLETED: &str = "deploy completed: ";

/// A relay's run as read back from its printed output (a fleet's children run `cmdeploy`
/// over SSH, whose output arrives as text).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Actions done (or planned in a dry run); `None` when the output has no run's last line.
    pub changes: Option<usize>,
    /// Units restarted or reloaded (or that would be); `None` with `changes`.
    pub restarts: Option<usize>,
}

impl Totals {
    /// Reads the totals from a run's output lines (as [`printer`] and [`outcome`] print).
    pub fn of(lines: &[String]) -> Totals {
        let changes = lines.iter().rev().find_map(|line| {
            let count = |rest: &str| rest.split_whitespace().next()?.parse().ok();
            match line.trim() {
                NOTHING => Some(0),
                line => line
                    .strip_prefix(COMPLETED)
                    .or_else(|| line.strip_prefix(DRY_RUN))
                    .and_then(count),
            }
        });
        let restarts = lines
            .iter()
            .filter_map(|line| line.split_once(": ").map(|(_, action)| action))
            .map(|action| action.strip_prefix(WOULD).unwrap_or(action))
            .filter(|action| action.starts_with("restart ") || action.starts_with("reload "))
            .count();
        Totals {
            changes,
            restarts: changes.map(|_| restarts),
        }
    }
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.changes, self.restarts) {
            (Some(changes), Some(restarts)) => {
                write!(f, "{changes} change(s), {restarts} restart(s)")
            }
            _ => f.write_str("done"),
        }
    }
}

/// The per-component summary printed at the end of a run: how many actions each component
/// had, the moves and removals listed again, then the warnings.
pub fn summary(report: &Report, components: &[&str], dry_run: bool) -> String {
    let width = components.iter().map(|c| c.len()).max().unwrap_or(0);
    let mut out = String::new();
    let mut lines = components.to_vec();
    if report.count("systemd") > 0 {
        lines.push("systemd");
    }
    for name in lines {
        let text = match (report.count(name), dry_run) {
            (0, _) => "unchanged".to_owned(),
            (n, true) => format!("{n} change(s) planned"),
            (n, false) => format!("{n} change(s)"),
        };
        out.push_str(&format!("  {name:width$}  {text}\n"));
    }
    let moved: Vec<_> = report
        .actions()
        .iter()
        .filter_map(|a| match &a.kind {
            Kind::Move { from, to } => Some((from, to, &a.component)),
            _ => None,
        })
        .collect();
    if !moved.is_empty() {
        out.push_str(&format!(
            "{} (where an earlier release kept it):\n",
            if dry_run { "would move" } else { "moved" }
        ));
        for (from, to, component) in moved {
            out.push_str(&format!(
                "  {} -> {}  ({component})\n",
                from.display(),
                to.display()
            ));
        }
    }
    let removed: Vec<_> = report
        .actions()
        .iter()
        .filter_map(|a| match &a.kind {
            Kind::Remove(path) => Some((path, &a.component)),
            _ => None,
        })
        .collect();
    if !removed.is_empty() {
        out.push_str(&format!(
            "{} (left by older releases, no longer declared, or replaced here):\n",
            if dry_run { "would remove" } else { "removed" }
        ));
        for (path, component) in removed {
            out.push_str(&format!("  {}  ({component})\n", path.display()));
        }
    }
    for warning in report.warnings() {
        out.push_str(&format!("{warning}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_read_back_from_what_a_run_prints() {
        let lines = |text: &str| text.lines().map(str::to_owned).collect::<Vec<_>>();
        let run = lines(
            "postfix: update /etc/postfix/main.cf\npostfix: reload postfix.service\n\
             filtermail: restart filtermail.service\n\n  postfix  2 change(s)\n\
             deploy completed: 3 change(s)\nDeploy completed, call `cmdeploy dns` next.\n",
        );
        assert_eq!(
            Totals::of(&run),
            Totals {
                changes: Some(3),
                restarts: Some(2)
            }
        );
        let dry = lines(
            "postfix: would restart postfix.service\ndry run: 1 change(s) planned, nothing changed\n",
        );
        assert_eq!(Totals::of(&dry).changes, Some(1));
        assert_eq!(Totals::of(&dry).restarts, Some(1));
        assert_eq!(Totals::of(&lines("\nnothing to change\n")).changes, Some(0));
        assert_eq!(Totals::of(&lines("error: ssh failed\n")), Totals::default());
        assert_eq!(
            outcome(2, true),
            "dry run: 2 change(s) planned, nothing changed"
        );
    }
    use chatmail_core::report::Action;
    use chatmail_core::systemd::Verb;

    #[test]
    fn the_summary_counts_actions_and_names_what_was_moved_and_removed() {
        let mut report = Report::default();
        report.push(Action::new(
            "legacy",
            Kind::Move {
                from: "/home/vmail/mail/[10.0.0.1]".into(),
                to: "/home/vmail/mail/10.0.0.1".into(),
            },
            "move /home/vmail/mail/[10.0.0.1] to /home/vmail/mail/10.0.0.1",
        ));
        let venv = "/usr/local/lib/chatmaild/venv";
        report.push(Action::new(
            "legacy",
            Kind::Remove(venv.into()),
            format!("remove {venv}"),
        ));
        report.push(Action::new(
            "legacy",
            Kind::Unit(Verb::Stop),
            "stop echobot.service",
        ));
        report.push(Action::new(
            "postfix",
            Kind::File,
            "update /etc/postfix/main.cf",
        ));
        report.push(Action::new("systemd", Kind::DaemonReload, "daemon-reload"));
        report.push_warning("tls: warning: careful".into());
        assert_eq!(
            summary(&report, &["legacy", "postfix", "tls"], false),
            "  legacy   3 change(s)\n  postfix  1 change(s)\n  tls      unchanged\n\
             \x20 systemd  1 change(s)\n\
             moved (where an earlier release kept it):\n\
             \x20 /home/vmail/mail/[10.0.0.1] -> /home/vmail/mail/10.0.0.1  (legacy)\n\
             removed (left by older releases, no longer declared, or replaced here):\n\
             \x20 /usr/local/lib/chatmaild/venv  (legacy)\n\
             tls: warning: careful\n"
        );
    }
}
