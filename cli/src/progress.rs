//! How a run looks on the terminal: each action as the engine reports it (diffs in a dry run
//! or with `-v`), warnings and notices, and the closing summary per component.

use chatmail_core::report::{Event, Kind, Report};

/// The observer that prints a run as it goes.
pub fn printer(dry_run: bool, verbose: bool) -> impl FnMut(Event<'_>) {
    let prefix = if dry_run { "would " } else { "" };
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

/// The per-component summary printed at the end of a run: how many actions each component
/// had, the removals listed again, then the warnings.
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
    use chatmail_core::report::Action;
    use chatmail_core::systemd::Verb;

    #[test]
    fn the_summary_counts_actions_and_names_what_was_removed() {
        let mut report = Report::default();
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
            "  legacy   2 change(s)\n  postfix  1 change(s)\n  tls      unchanged\n\
             \x20 systemd  1 change(s)\n\
             removed (left by older releases, no longer declared, or replaced here):\n\
             \x20 /usr/local/lib/chatmaild/venv  (legacy)\n\
             tls: warning: careful\n"
        );
    }
}
