//! `cmdeploy config`: the effective settings and where each came from.

use std::path::Path;

use anyhow::Result;
use chatmail_core::Registry;

pub fn run(path: &Path) -> Result<()> {
    let config = crate::load_config(path, &Registry::linked()?)?;
    let width = config
        .settings
        .iter()
        .map(|s| s.key.len())
        .max()
        .unwrap_or(0);
    for setting in &config.settings {
        let value = setting.value.as_deref().unwrap_or("(unset)");
        println!("{:width$}  {:30}  {}", setting.key, value, setting.source);
    }
    println!();
    println!("derived:");
    let derived = [
        ("mail_domain (in addresses)", config.mail_domain.clone()),
        ("postfix myhostname", config.postfix_myhostname.clone()),
        ("tls mode", config.tls.mode.as_str().to_owned()),
        (
            "tls certificate",
            config.tls.cert_path.display().to_string(),
        ),
        ("tls key", config.tls.key_path.display().to_string()),
        ("mailboxes", config.mailboxes_dir.display().to_string()),
        ("local iroh-relay", config.enable_iroh_relay.to_string()),
    ];
    for (name, value) in derived {
        println!("  {name:28}  {value}");
    }
    for unused in &config.unused_keys {
        println!(
            "warning: {}:{}: {} has no effect",
            config.origin.display(),
            unused.line,
            unused.key
        );
    }
    Ok(())
}
