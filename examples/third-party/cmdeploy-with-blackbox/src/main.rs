//! A deploy binary of our own: cmdeploy's built-in components plus the blackbox component.

// Rust links only the crates a binary names; without this line the blackbox component's
// registration would silently be missing (tests/registry.rs checks that it is there).
use blackbox_component as _;

fn main() -> std::process::ExitCode {
    cmdeploy::main()
}
