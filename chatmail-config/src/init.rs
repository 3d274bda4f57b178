//! The commented `chatmail.ini` that `cmdeploy init <domain>` writes, generated from the schema.

use crate::schema::{DefaultValue, Group, KEYS};

/// A complete `chatmail.ini` for `domain`: `mail_domain` set, every other key shown commented
/// out with its default and an explanation, and the four privacy contacts left empty to fill in.
pub fn default_ini(domain: &str) -> String {
    let mut out = String::from(
        "# chatmail relay settings; see `cmdeploy config` for the effective values.\n\
         # Lines starting with '#' show defaults: uncomment and edit them to change a setting.\n\
         [params]\n",
    );
    let mut group = None;
    for key in KEYS {
        if group != Some(key.group) {
            group = Some(key.group);
            out.push_str(&format!("\n## {}\n", key.group.heading()));
        }
        for line in key.help.lines() {
            out.push_str(&format!("# {}\n", line.trim()));
        }
        match (key.name, key.default, key.group) {
            ("mail_domain", _, _) => out.push_str(&format!("mail_domain = {domain}\n")),
            (_, _, Group::Privacy) => out.push_str(&format!("{} =\n", key.name)),
            (_, DefaultValue::Value(v) | DefaultValue::Derived(v), _) => {
                out.push_str(&format!("# {} = {v}\n", key.name));
            }
            (_, DefaultValue::Unset | DefaultValue::Required, _) => {
                out.push_str(&format!("# {} =\n", key.name));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use std::path::Path;

    #[test]
    fn the_written_file_reads_back_with_all_defaults() {
        let text = default_ini("chat.example.org");
        let config = Config::parse(&text, Path::new("chatmail.ini"), &|_| None).unwrap();
        assert_eq!(config.mail_domain, "chat.example.org");
        assert_eq!(config.max_user_send_per_minute, 60);
        assert!(config.unused_keys.is_empty());
        assert_eq!(config.privacy_mail.as_deref(), Some(""));
        assert!(
            config.enable_iroh_relay,
            "iroh_relay must stay commented out"
        );
        assert!(text.contains("# max_mailbox_size = 500M\n"));
        assert!(text.contains("\nprivacy_supervisor =\n"));
    }
}
