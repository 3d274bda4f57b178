//! What a run did (or, in a dry run, would do): typed actions in run order, and warnings.
//! The engine hands each to the front end's observer as it happens; printing and the closing
//! summary are the front end's.

use std::path::PathBuf;

use crate::systemd::Verb;

/// The kind of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A file written (created, updated, edited, downloaded) or its owner and mode set.
    File,
    /// A directory created, or its owner and mode set.
    Dir,
    /// A file, link or directory removed.
    Remove(PathBuf),
    /// What an earlier release kept elsewhere, renamed to where it belongs now.
    Move {
        /// Where it was.
        from: PathBuf,
        /// Where it is now.
        to: PathBuf,
    },
    /// A secret generated, or its files repaired.
    Generate,
    /// A command run (a change command, a user added, a best-effort attempt).
    Run,
    /// Packages installed, removed or purged.
    Packages,
    /// `systemctl daemon-reload`.
    DaemonReload,
    /// A unit started, stopped, restarted, reloaded, enabled, disabled, masked or unmasked.
    Unit(Verb),
}

/// One thing a run does to the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The component it is for (`systemd` for daemon-reload, `cmdeploy` for the engine's
    /// own leftovers).
    pub component: String,
    /// What kind of thing it does.
    pub kind: Kind,
    /// The action in words, e.g. `update /etc/postfix/main.cf`, `restart postfix.service`.
    pub text: String,
    /// The unified diff of a file's content, when it changes.
    pub diff: Option<String>,
}

impl Action {
    /// An action of `component` without a diff.
    pub fn new(component: &str, kind: Kind, text: impl Into<String>) -> Action {
        Action {
            component: component.to_owned(),
            kind,
            text: text.into(),
            diff: None,
        }
    }

    /// The action with `diff`.
    pub fn with_diff(self, diff: Option<String>) -> Action {
        Action { diff, ..self }
    }
}

/// Something the engine tells its observer as the run goes.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// An action about to be done (or, in a dry run, that would be done).
    Action(&'a Action),
    /// Something went wrong without failing the run; also kept for the summary.
    Warning(&'a str),
    /// Information that is no change, e.g. an optional download that could not be had.
    Notice(&'a str),
}

/// The actions and warnings of one run.
#[derive(Debug, Default)]
pub struct Report {
    actions: Vec<Action>,
    warnings: Vec<String>,
}

impl Report {
    /// Adds an action (the engine does, as it goes) and returns it.
    pub fn push(&mut self, action: Action) -> &Action {
        let index = self.actions.len();
        self.actions.push(action);
        &self.actions[index]
    }

    /// Adds a warning and returns it.
    pub fn push_warning(&mut self, text: String) -> &str {
        let index = self.warnings.len();
        self.warnings.push(text);
        &self.warnings[index]
    }

    /// Every action, in run order.
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    /// The warnings of this run, in order (`<component>: warning: ...`).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// How many actions `component` had.
    pub fn count(&self, component: &str) -> usize {
        self.actions
            .iter()
            .filter(|a| a.component == component)
            .count()
    }

    /// Total number of actions.
    pub fn total(&self) -> usize {
        self.actions.len()
    }
}
