//! systemd on the target: unit states in one `systemctl show`, the decision table of what to
//! do to each unit, and those actions, one `systemctl` call per verb (unit-file edits without
//! their implicit `daemon-reload`: the caller does one for all).
//! [`show_argv`] and [`parse_show`] are public so a front end can ask a machine it reaches
//! another way (over SSH) the same question.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use crate::plan::Service;
use crate::target::{Target, argv, tail};

/// What systemd reports about a unit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitState {
    /// `ActiveState`: `active`, `inactive`, `failed`, `activating`, ...
    pub active_state: String,
    /// Active, or on its way there (`activating`, `reloading`).
    pub active: bool,
    /// `UnitFileState`: `enabled`, `disabled`, `static`, `masked`, ...
    pub file_state: String,
    /// Its last start was skipped because a start condition failed (e.g.
    /// `ConditionFileIsExecutable=` naming a binary that is not installed).
    pub skipped: bool,
    /// `ConsistsOf`: the units it is made of and restarts with (`postfix.service` is a
    /// wrapper of `postfix@-.service`, which runs the daemon).
    pub parts: Vec<String>,
    /// `NeedDaemonReload`: its unit file or a drop-in changed since systemd loaded it, so
    /// the rest is what systemd read before.
    pub stale_definition: bool,
}

impl UnitState {
    /// Whether the unit starts at boot; `None` for units that cannot be enabled or disabled
    /// (`static` units without an `[Install]` section, aliases, generated units).
    pub fn enabled(&self) -> Option<bool> {
        match self.file_state.as_str() {
            "enabled" | "enabled-runtime" => Some(true),
            "disabled" => Some(false),
            _ => None,
        }
    }
}

/// The states of `units`, asked in one call.
pub fn states(target: &Target, units: &[String]) -> Result<BTreeMap<String, UnitState>> {
    if units.is_empty() {
        return Ok(BTreeMap::new());
    }
    let output = target.run(&show_argv(units), &[])?;
    Ok(parse_show(units, &String::from_utf8_lossy(&output.stdout)))
}

/// The one `systemctl show` that asks every property [`UnitState`] holds for `units`.
pub fn show_argv(units: &[String]) -> Vec<String> {
    let mut command = argv(&[
        "systemctl",
        "show",
        "--property=ActiveState,UnitFileState,ConditionResult,ConditionTimestampMonotonic,ConsistsOf,NeedDaemonReload",
        "--",
    ]);
    command.extend(units.iter().cloned());
    command
}

/// Reads the output of [`show_argv`]: one block of `Property=value` lines per unit, in order.
pub fn parse_show(units: &[String], text: &str) -> BTreeMap<String, UnitState> {
    let mut states = BTreeMap::new();
    for (unit, block) in units.iter().zip(text.split("\n\n")) {
        let mut state = UnitState::default();
        let (mut condition_failed, mut condition_checked) = (false, false);
        for line in block.lines() {
            match line.split_once('=') {
                Some(("ActiveState", value)) => {
                    state.active = matches!(value, "active" | "activating" | "reloading");
                    state.active_state = value.to_owned();
                }
                Some(("UnitFileState", value)) => state.file_state = value.to_owned(),
                Some(("ConsistsOf", value)) => {
                    state.parts = value.split_whitespace().map(str::to_owned).collect();
                }
                Some(("ConditionResult", value)) => condition_failed = value == "no",
                Some(("NeedDaemonReload", value)) => state.stale_definition = value == "yes",
                Some(("ConditionTimestampMonotonic", value)) => {
                    condition_checked = value.parse::<u64>().is_ok_and(|t| t > 0);
                }
                _ => {}
            }
        }
        state.skipped = !state.active && condition_failed && condition_checked;
        states.insert(unit.clone(), state);
    }
    states
}

/// What activation does to a unit. The order of the variants is the order in which the
/// verbs are applied across all units: what must stop goes first, starts come last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verb {
    /// Stop a running unit that should not run (or is to be masked).
    Stop,
    /// Make a unit impossible to start.
    Mask,
    /// Undo a mask, so the unit can be enabled and started.
    Unmask,
    /// Do not start it at boot.
    Disable,
    /// Start it at boot.
    Enable,
    /// Re-read its configuration without a restart (owed by a change that a reload covers).
    Reload,
    /// Restart a running unit (owed by a change).
    Restart,
    /// Start a unit that should run and does not.
    Start,
}

impl Verb {
    /// Every verb, in the order they are applied.
    pub const ALL: [Verb; 8] = [
        Verb::Stop,
        Verb::Mask,
        Verb::Unmask,
        Verb::Disable,
        Verb::Enable,
        Verb::Reload,
        Verb::Restart,
        Verb::Start,
    ];

    /// Whether it changes unit files (links under `/etc/systemd/system`) rather than what
    /// runs: applied with `--no-reload`, so that systemd reads them once, in the one
    /// `daemon-reload` that activation then owes (each `systemctl enable` reloads otherwise).
    pub fn edits_unit_files(self) -> bool {
        matches!(
            self,
            Verb::Mask | Verb::Unmask | Verb::Disable | Verb::Enable
        )
    }

    /// Whether it runs a unit (with the definition systemd has loaded): applied after that
    /// `daemon-reload`.
    pub fn runs_unit(self) -> bool {
        matches!(self, Verb::Reload | Verb::Restart | Verb::Start)
    }

    /// The `systemctl` verb.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Stop => "stop",
            Verb::Mask => "mask",
            Verb::Unmask => "unmask",
            Verb::Disable => "disable",
            Verb::Enable => "enable",
            Verb::Reload => "reload",
            Verb::Restart => "restart",
            Verb::Start => "start",
        }
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The decision table of activation: what brings a unit in `state` to what `service` wants,
/// when a change owes it a `restart` or a `reload` (a restart covers a reload).
pub fn decide(service: &Service, state: &UnitState, restart: bool, reload: bool) -> Vec<Verb> {
    let mut verbs = Vec::new();
    if service.masked {
        if state.active {
            verbs.push(Verb::Stop);
        }
        if state.file_state != "masked" {
            verbs.push(Verb::Mask);
        }
        return verbs;
    }
    if state.file_state == "masked" {
        verbs.push(Verb::Unmask);
    }
    if state
        .enabled()
        .is_some_and(|enabled| enabled != service.enabled)
    {
        verbs.push(match service.enabled {
            true => Verb::Enable,
            false => Verb::Disable,
        });
    }
    match (service.running, state.active) {
        // Its start condition failed (e.g. an optional binary is missing); only a change
        // owing it a restart (the binary arrived) starts it again.
        (true, false) if state.skipped && !restart => {}
        (true, false) => verbs.push(Verb::Start),
        (true, true) if restart => verbs.push(Verb::Restart),
        (true, true) if reload => verbs.push(Verb::Reload),
        (false, true) => verbs.push(Verb::Stop),
        _ => {}
    }
    verbs
}

/// Runs `systemctl <verb> <units...>` in one call (systemd runs the jobs in parallel; a
/// verb that edits unit files leaves the `daemon-reload` to the caller); a failure shows the
/// recent journal of each unit that did not get where it should.
pub fn act(target: &Target, verb: Verb, units: &[String]) -> Result<()> {
    let mut command = argv(&["systemctl", verb.as_str()]);
    if verb.edits_unit_files() {
        command.push("--no-reload".to_owned());
    }
    command.push("--".to_owned());
    command.extend(units.iter().cloned());
    let output = target.run_unchecked(&command, &[])?;
    if output.status.success() {
        return Ok(());
    }
    let states = states(target, units).unwrap_or_default();
    let wants_active = matches!(verb, Verb::Reload | Verb::Restart | Verb::Start);
    let failed = |unit: &String| {
        states
            .get(unit)
            .is_none_or(|s| s.active_state == "failed" || (wants_active && !s.active))
    };
    // A failed reload leaves its unit active: then every unit's journal is shown.
    let suspects: Vec<&String> = match units.iter().filter(|u| failed(u)).collect::<Vec<_>>() {
        found if found.is_empty() => units.iter().collect(),
        found => found,
    };
    let mut journals = String::new();
    for unit in suspects {
        let journal = target
            .run_unchecked(
                &argv(&["journalctl", "--no-pager", "-n", "15", "-u", unit]),
                &[],
            )
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        journals.push_str(&format!("\n{unit}:\n{journal}"));
    }
    Err(anyhow::anyhow!(
        "`systemctl {verb} {}` failed:\n{}\n{journals}",
        units.join(" "),
        tail(&output)
    ))
    .context(format!("activation: {verb} {}", units.join(" ")))
}

/// `systemctl daemon-reload`.
pub fn daemon_reload(target: &Target) -> Result<()> {
    target.run(&argv(&["systemctl", "daemon-reload"]), &[])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(active: bool, file_state: &str, skipped: bool) -> UnitState {
        UnitState {
            active_state: (if active { "active" } else { "inactive" }).into(),
            active,
            file_state: file_state.into(),
            skipped,
            parts: Vec::new(),
            stale_definition: false,
        }
    }

    #[test]
    fn the_decision_table_brings_each_unit_where_its_service_wants_it() {
        use Verb::*;
        let running = Service::running("a.service");
        let stopped = Service::stopped("a.service");
        let masked = Service::masked("a.service");
        let (on, off) = (true, false);
        // (service, active, file state, skipped, restart owed, reload owed) -> verbs
        type Row<'a> = (&'a Service, bool, &'a str, bool, bool, bool, &'a [Verb]);
        let table: &[Row] = &[
            (&running, on, "enabled", off, off, off, &[]),
            (&running, off, "enabled", off, off, off, &[Start]),
            (&running, off, "disabled", off, off, off, &[Enable, Start]),
            (&running, on, "enabled", off, on, off, &[Restart]),
            (&running, on, "enabled", off, off, on, &[Reload]),
            (&running, on, "enabled", off, on, on, &[Restart]),
            (&running, off, "enabled", off, on, on, &[Start]),
            (&running, off, "static", off, off, off, &[Start]),
            (&running, off, "masked", off, off, off, &[Unmask, Start]),
            (&running, off, "enabled", on, off, off, &[]),
            (&running, off, "enabled", on, on, off, &[Start]),
            (&stopped, on, "enabled", off, on, on, &[Disable, Stop]),
            (&stopped, off, "disabled", off, on, off, &[]),
            (&masked, on, "enabled", off, on, off, &[Stop, Mask]),
            (&masked, off, "masked", off, off, off, &[]),
        ];
        for (service, active, file_state, skipped, restart, reload, verbs) in table {
            let state = state(*active, file_state, *skipped);
            assert_eq!(
                decide(service, &state, *restart, *reload),
                *verbs,
                "{service:?} in {state:?}, restart {restart}, reload {reload}"
            );
        }
    }

    #[test]
    fn a_start_skipped_by_a_failed_condition_is_told_apart_from_a_unit_never_started() {
        let units = ["skipped", "never", "running"].map(String::from);
        let text = "ActiveState=inactive\nUnitFileState=enabled\nConditionResult=no\n\
                    ConditionTimestampMonotonic=123\n\n\
                    ActiveState=inactive\nUnitFileState=disabled\nConditionResult=no\n\
                    ConditionTimestampMonotonic=0\nNeedDaemonReload=yes\n\n\
                    ActiveState=active\nUnitFileState=enabled\nConditionResult=yes\n\
                    ConditionTimestampMonotonic=99\nConsistsOf=postfix@-.service\n\
                    NeedDaemonReload=no\n";
        let states = parse_show(&units, text);
        assert!(states["skipped"].skipped && !states["skipped"].active);
        assert!(!states["never"].skipped);
        assert!(!states["running"].skipped && states["running"].active);
        assert_eq!(states["skipped"].enabled(), Some(true));
        assert_eq!(states["never"].enabled(), Some(false));
        assert_eq!(states["running"].active_state, "active");
        assert_eq!(states["running"].parts, ["postfix@-.service"]);
        assert!(states["never"].parts.is_empty());
        assert!(states["never"].stale_definition);
        assert!(!states["running"].stale_definition && !states["skipped"].stale_definition);
    }
}
