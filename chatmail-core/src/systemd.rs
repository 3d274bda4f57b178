//! systemd on the target: unit states in one `systemctl show`, and the actions on units.
//! [`show_argv`] and [`parse_show`] are public so a front end can ask a machine it reaches
//! another way (over SSH) the same question.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

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
        "--property=ActiveState,UnitFileState,ConditionResult,ConditionTimestampMonotonic",
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
                Some(("ConditionResult", value)) => condition_failed = value == "no",
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

/// Runs `systemctl <verb> <unit>`; a failure shows the unit's recent journal.
pub fn act(target: &Target, verb: &str, unit: &str) -> Result<()> {
    let output = target.run_unchecked(&argv(&["systemctl", verb, unit]), &[])?;
    if output.status.success() {
        return Ok(());
    }
    let journal = target
        .run_unchecked(
            &argv(&["journalctl", "--no-pager", "-n", "15", "-u", unit]),
            &[],
        )
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    Err(anyhow::anyhow!(
        "`systemctl {verb} {unit}` failed:\n{}\n{journal}",
        tail(&output)
    ))
    .context(format!("activating {unit}"))
}

/// `systemctl daemon-reload`.
pub fn daemon_reload(target: &Target) -> Result<()> {
    target.run(&argv(&["systemctl", "daemon-reload"]), &[])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_skipped_by_a_failed_condition_is_told_apart_from_a_unit_never_started() {
        let units = ["skipped", "never", "running"].map(String::from);
        let text = "ActiveState=inactive\nUnitFileState=enabled\nConditionResult=no\n\
                    ConditionTimestampMonotonic=123\n\n\
                    ActiveState=inactive\nUnitFileState=disabled\nConditionResult=no\n\
                    ConditionTimestampMonotonic=0\n\n\
                    ActiveState=active\nUnitFileState=enabled\nConditionResult=yes\n\
                    ConditionTimestampMonotonic=99\n";
        let states = parse_show(&units, text);
        assert!(states["skipped"].skipped && !states["skipped"].active);
        assert!(!states["never"].skipped);
        assert!(!states["running"].skipped && states["running"].active);
        assert_eq!(states["skipped"].enabled(), Some(true));
        assert_eq!(states["never"].enabled(), Some(false));
        assert_eq!(states["running"].active_state, "active");
    }
}
