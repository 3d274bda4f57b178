//! What a run changed (or, in a dry run, would change), per component, in run order.

/// The changes of one run.
#[derive(Debug, Default)]
pub struct Report {
    components: Vec<(String, Vec<String>)>,
    warnings: Vec<String>,
}

impl Report {
    /// Notes a change and prints it as it happens.
    pub fn record(&mut self, component: &str, what: &str, dry_run: bool) {
        let prefix = if dry_run { "would " } else { "" };
        println!("{component}: {prefix}{what}");
        match self
            .components
            .iter_mut()
            .find(|(name, _)| name == component)
        {
            Some((_, changes)) => changes.push(what.to_owned()),
            None => self
                .components
                .push((component.to_owned(), vec![what.to_owned()])),
        }
    }

    /// Notes something that went wrong without failing the run; printed now and in the summary.
    pub fn warn(&mut self, component: &str, text: &str) {
        let line = format!("{component}: warning: {text}");
        eprintln!("{line}");
        self.warnings.push(line);
    }

    /// The warnings of this run, in order.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// How many changes `component` has had so far.
    pub fn count(&self, component: &str) -> usize {
        self.components
            .iter()
            .find(|(name, _)| name == component)
            .map_or(0, |(_, changes)| changes.len())
    }

    /// Total number of changes.
    pub fn total(&self) -> usize {
        self.components.iter().map(|(_, c)| c.len()).sum()
    }

    /// The per-component summary printed at the end of a run.
    pub fn summary(&self, components: &[&str], dry_run: bool) -> String {
        let width = components.iter().map(|c| c.len()).max().unwrap_or(0);
        let mut out = String::new();
        for name in components {
            let count = self.count(name);
            let text = match (count, dry_run) {
                (0, _) => "unchanged".to_owned(),
                (n, true) => format!("{n} change(s) planned"),
                (n, false) => format!("{n} change(s)"),
            };
            out.push_str(&format!("  {name:width$}  {text}\n"));
        }
        if let Some((_, changes)) = self.components.iter().find(|(name, _)| name == "systemd") {
            out.push_str(&format!(
                "  {:width$}  {} change(s)\n",
                "systemd",
                changes.len()
            ));
        }
        let removed: Vec<(&String, &str)> = self
            .components
            .iter()
            .flat_map(|(name, changes)| changes.iter().map(move |c| (name, c)))
            .filter_map(|(name, change)| Some((name, change.strip_prefix("remove ")?)))
            .collect();
        if !removed.is_empty() {
            out.push_str(&format!(
                "{} (left by older releases or replaced here):\n",
                if dry_run { "would remove" } else { "removed" }
            ));
            for (name, what) in removed {
                out.push_str(&format!("  {what}  ({name})\n"));
            }
        }
        for warning in &self.warnings {
            out.push_str(&format!("{warning}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_changes_and_names_what_was_removed() {
        let mut report = Report::default();
        report.record("legacy", "remove /usr/local/lib/chatmaild/venv", false);
        report.record("legacy", "stop echobot.service", false);
        report.record("postfix", "update /etc/postfix/main.cf", false);
        assert_eq!(
            report.summary(&["legacy", "postfix", "tls"], false),
            "  legacy   2 change(s)\n  postfix  1 change(s)\n  tls      unchanged\n\
             removed (left by older releases or replaced here):\n\
             \x20 /usr/local/lib/chatmaild/venv  (legacy)\n"
        );
    }
}
