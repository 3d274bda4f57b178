//! systemd on the target: unit states in one `systemctl show`, and the actions on units.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use crate::target::{Target, argv, tail};

/// What systemd reports about a unit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitState {
    pub active: bool,
    /// `UnitFileState`: `enabled`, `disabled`, `static`, `masked`, ...
    pub file_state: String,
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
    let mut command = argv(&[
        "systemctl",
        "show",
        "--property=ActiveState,UnitFileState",
        "--",
    ]);
    command.extend(units.iter().cloned());
    let output = target.run(&command, &[])?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut states = BTreeMap::new();
    for (unit, block) in units.iter().zip(text.split("\n\n")) {
        let mut state = UnitState::default();
        for line in block.lines() {
            match line.split_once('=') {
                Some(("ActiveState", value)) => {
                    state.active = matches!(value, "active" | "activating" | "reloading");
                }
                Some(("UnitFileState", value)) => state.file_state = value.to_owned(),
                _ => {}
            }
        }
        states.insert(unit.clone(), state);
    }
    Ok(states)
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
