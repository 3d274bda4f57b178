//! Every task answers `--help` with its usage, and a mistake with a short message naming it.

use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run xtask")
}

#[test]
fn every_task_prints_its_help() {
    for task in ["rootfs", "dovecot", "bench", "demo", "image"] {
        let output = xtask(&[task, "--help"]);
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{task}: {output:?}");
        assert!(
            text.contains(&format!("Usage: cargo xtask {task}")),
            "{task}: {text}"
        );
    }
    let image = String::from_utf8_lossy(&xtask(&["image", "--help"]).stdout).into_owned();
    for option in ["--engine", "--base", "--tag", "--binaries"] {
        assert!(image.contains(option), "{image}");
    }
    let all = xtask(&["--help"]);
    assert!(String::from_utf8_lossy(&all.stdout).contains("demo"));
}

#[test]
fn mistakes_are_named_without_a_backtrace() {
    for (args, named) in [
        (&["imgae"][..], "unrecognized subcommand 'imgae'"),
        (
            &["image", "--tag"][..],
            "a value is required for '--tag <TAG>'",
        ),
        (&["demo", "--relays", "3"][..], "3 is not in 1..=2"),
        (&["bench", "fast"][..], "invalid value 'fast'"),
    ] {
        let output = xtask(args);
        let text = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {text}");
        assert!(text.contains(named), "{args:?}: {text}");
        assert!(!text.contains("backtrace"), "{args:?}: {text}");
    }
}
