//! The engine of `cmdeploy`: components declare the state they want, the engine makes the
//! target match it.
//!
//! For component authors (the stable surface):
//! - [`Component`] and [`register!`]: implement the three phases and register the component.
//! - [`plan`]: the contexts the phases fill in ([`Install`], [`Configure`], [`Activate`]) and
//!   the items they hold (files, users, downloads, services, ...).
//! - [`config`]: the deployment settings (`chatmail.ini`), re-exported from `chatmail-config`.
//! - [`Facts`]: what is known about the target (architecture, systemd, container, installed
//!   package versions).
//! - [`reachable`]: whether a download's server answers, for a plan that falls back without it.
//!
//! For front ends (the `cmdeploy` CLI):
//! - [`Registry`]: every linked component, ordered by `after`.
//! - [`engine`]: planning and executing phases, with dry runs and pending restarts;
//!   [`report`]: the typed actions of a run, told to the front end's observer as they happen.
//! - [`systemd`]: the decision table of activation and its verbs.
//! - [`Target`]: `/` or a `--root` directory, and how commands run there.
//! - [`Templates`]: built-in templates and operator overrides.
//! - [`show_argv`], [`parse_show`], [`UnitState`]: unit states in one `systemctl show`.
//! - [`shell_words`], [`tail`]: argv as a quoted shell command line (messages, and `ssh`'s
//!   remote shell); the last lines of a command's output.

#![warn(missing_docs)]

mod accounts;
mod component;
mod download;
mod dpkg;
pub mod engine;
mod facts;
mod files;
mod generate;
mod manifest;
pub mod plan;
mod ports;
pub mod report;
mod stage;
mod stale;
mod state;
pub mod systemd;
mod target;
mod template;

pub use chatmail_config as config;
pub use component::{AFTER_ALL, Component, Registration, Registry};
pub use download::reachable;
pub use facts::{Facts, deb_arch, kernel_setting};
pub use files::backdate;
pub use plan::{Activate, Configure, Install};
pub use state::{PENDING_PATH, RUN_LOCK_DIR, RunLock};
pub use systemd::{UnitState, parse_show, show_argv};
pub use target::{Target, argv, shell_words, tail};
pub use template::Templates;

#[doc(hidden)]
pub use inventory;
