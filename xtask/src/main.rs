//! `cargo xtask`: developer tasks.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("no tasks yet")
}
