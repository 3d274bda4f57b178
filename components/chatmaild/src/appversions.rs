//! The app-versions document that chatmail-metadata serves to Delta Chat under the
//! `appversions` server key: the built-in one or an operator's override of the template
//! `chatmaild/appversions.json`, checked while planning so a bad one changes nothing.

use std::collections::BTreeSet;

use anyhow::{Result, bail};
use chatmail_core::config::brief;
use serde::Deserialize;

/// Where chatmail-metadata reads it (its `--appversions` default).
pub const PATH: &str = "/usr/local/lib/chatmaild/appversions.json";

/// The template it is rendered from, `--templates` overrides it.
pub const TEMPLATE: &str = "appversions.json";

/// Clients are told to download only from these places.
const DOWNLOAD_PREFIXES: [&str; 2] = [
    "https://github.com/deltachat/",
    "https://download.delta.chat/",
];

/// A document this large is not an app-versions list; refused without reading it out.
const MAX_BYTES: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    clients: Vec<Client>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Client {
    client_id: String,
    sources: Vec<Source>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Source {
    source_id: String,
    /// The app's build number: a JSON integer that fits 32 bits (not a string or a boolean).
    #[expect(dead_code, reason = "only its type is checked")]
    version_integer: u32,
    #[expect(dead_code, reason = "only its type is checked")]
    version_string: String,
    download_url: String,
}

/// Checks `text` against the rules Delta Chat relies on: the schema (known keys only,
/// integer versions), unique client ids, unique source ids per client, and download links
/// only to Delta Chat's own places.
pub fn check(text: &[u8]) -> Result<()> {
    if text.len() > MAX_BYTES {
        bail!("{} bytes; at most {MAX_BYTES} are allowed", text.len());
    }
    let parser = &mut serde_json::Deserializer::from_slice(text);
    let document: Document = match serde_path_to_error::deserialize(parser) {
        Ok(document) => document,
        Err(err) => {
            let problem = brief(&err.inner().to_string());
            match err.path().to_string().as_str() {
                "." => bail!("{problem}"),
                path => bail!("{path}: {problem}"),
            }
        }
    };
    let mut clients = BTreeSet::new();
    for client in &document.clients {
        let id = brief(&client.client_id);
        if !clients.insert(&client.client_id) {
            bail!("clientId {id:?} is listed twice");
        }
        let mut sources = BTreeSet::new();
        for source in &client.sources {
            let source_id = brief(&source.source_id);
            if !sources.insert(&source.source_id) {
                bail!("client {id:?}: sourceId {source_id:?} is listed twice");
            }
            if !DOWNLOAD_PREFIXES
                .iter()
                .any(|prefix| source.download_url.starts_with(prefix))
            {
                bail!(
                    "client {id:?}, source {source_id:?}: downloadUrl {:?} must start with {}",
                    brief(&source.download_url),
                    DOWNLOAD_PREFIXES.join(" or ")
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUILT_IN: &str = include_str!("../../../templates/chatmaild/appversions.json");

    fn refusal(text: &str) -> String {
        format!("{:#}", check(text.as_bytes()).unwrap_err())
    }

    /// The built-in document with `from` replaced by `to` (which must occur in it).
    fn edited(from: &str, to: &str) -> String {
        assert!(BUILT_IN.contains(from), "{from}");
        BUILT_IN.replacen(from, to, 1)
    }

    #[test]
    fn the_built_in_document_passes() {
        check(BUILT_IN.as_bytes()).unwrap();
    }

    #[test]
    fn versions_must_be_integers_of_32_bits() {
        for bad in ["true", "\"754\"", "754.5", "-1", "4294967296"] {
            let text = edited("754", bad);
            let refusal = refusal(&text);
            assert!(
                refusal.starts_with("clients[0].sources[0].versionInteger: invalid"),
                "{bad}: {refusal}"
            );
        }
    }

    #[test]
    fn unknown_and_missing_keys_are_refused() {
        let unknown = edited("\"clientId\"", "\"platform\": \"android\", \"clientId\"");
        assert!(
            refusal(&unknown).contains("unknown field `platform`"),
            "{}",
            refusal(&unknown)
        );
        let missing = edited("\"versionString\": \"2.57.0\",", "");
        assert!(
            refusal(&missing).contains("missing field `versionString`"),
            "{}",
            refusal(&missing)
        );
        assert!(
            refusal("5").starts_with("invalid type: integer `5`, expected struct Document"),
            "{}",
            refusal("5")
        );
    }

    #[test]
    fn ids_must_be_unique() {
        let source = r#"{"sourceId": "gplay", "versionInteger": 1, "versionString": "1",
            "downloadUrl": "https://download.delta.chat/x.apk"}"#;
        let twice = format!(
            r#"{{"clients": [{{"clientId": "deltachat", "sources": [{source}, {source}]}}]}}"#
        );
        assert_eq!(
            refusal(&twice),
            r#"client "deltachat": sourceId "gplay" is listed twice"#
        );
        let client = format!(r#"{{"clientId": "deltachat", "sources": [{source}]}}"#);
        let two_clients = format!(r#"{{"clients": [{client}, {client}]}}"#);
        assert_eq!(
            refusal(&two_clients),
            r#"clientId "deltachat" is listed twice"#
        );
    }

    #[test]
    fn downloads_only_from_delta_chat() {
        let text = edited(
            "https://github.com/deltachat/",
            "https://example.org/deltachat/",
        );
        assert!(
            refusal(&text)
                .contains("downloadUrl \"https://example.org/deltachat/deltachat-android"),
            "{}",
            refusal(&text)
        );
        let other = edited(
            "https://github.com/deltachat/deltachat-android/releases/download/v2.57.0/",
            "https://download.delta.chat/android/",
        );
        check(other.as_bytes()).unwrap();
    }

    #[test]
    fn huge_values_and_documents_are_not_echoed() {
        let long = "x".repeat(1_000_000);
        let huge_document = edited("2.57.0", &long);
        let size = huge_document.len();
        assert_eq!(
            refusal(&huge_document),
            format!("{size} bytes; at most 65536 are allowed")
        );
        let long_url = edited(
            "https://github.com/",
            &format!("https://{}", &long[..50_000]),
        );
        assert!(
            refusal(&long_url).len() < 500,
            "{}",
            refusal(&long_url).len()
        );
        let long_type = edited("754", &format!("\"{}\"", &long[..50_000]));
        assert!(
            refusal(&long_type).len() < 500,
            "{}",
            refusal(&long_type).len()
        );
    }
}
