//! newemail: the CGI behind `/new` that suggests a fresh address and password. Nothing is
//! created here; the account appears on its first login (see [`crate::doveauth`]).

use anyhow::Result;
use chatmail_config::{Config, TlsMode};

/// The environment variable naming the ini file; unset means [`crate::DEFAULT_INI`].
pub const INI_ENV: &str = "CHATMAIL_INI";

const LOCALPART_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const PASSWORD_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// A suggested account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    pub email: String,
    pub password: String,
}

/// A random `username_max_length`-character address and a password three characters longer
/// than `password_min_length`.
pub fn suggest(config: &Config) -> Result<Suggestion> {
    let local = crate::random::string(LOCALPART_CHARS, config.username_max_length as usize)?;
    Ok(Suggestion {
        email: format!("{local}@{}", config.mail_domain),
        password: crate::random::string(PASSWORD_CHARS, config.password_min_length as usize + 3)?,
    })
}

/// The `dclogin:` URL of a suggestion on a self-signed relay (`ic=3`: accept its certificate).
pub fn dclogin_url(config: &Config, suggestion: &Suggestion) -> String {
    let mut url = format!(
        "dclogin:{}?p={}&v=1",
        percent_encode(&suggestion.email, b"@[]"),
        percent_encode(&suggestion.password, b"")
    );
    if let Some(ip) = config.ipv4_relay {
        url.push_str(&format!("&ih={ip}&sh={ip}"));
    }
    url.push_str("&ic=3");
    url
}

/// The full CGI response: header, blank line, one line of JSON.
pub fn response(config: &Config) -> Result<String> {
    let suggestion = suggest(config)?;
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    let mut json = format!(
        "{{\"email\": {}, \"password\": {}",
        quote(&suggestion.email),
        quote(&suggestion.password)
    );
    if config.tls.mode == TlsMode::SelfSigned {
        json.push_str(&format!(
            ", \"dclogin_url\": {}",
            quote(&dclogin_url(config, &suggestion))
        ));
    }
    json.push('}');
    Ok(format!("Content-Type: application/json\n\n{json}\n"))
}

/// Percent-encodes everything but ASCII letters, digits, `_.-~` and the `safe` bytes.
pub fn percent_encode(s: &str, safe: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) || safe.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_like_pythons_quote() {
        assert_eq!(percent_encode("p@ss w+rd", b""), "p%40ss%20w%2Brd");
        assert_eq!(percent_encode("a@[1.2.3.4]", b"@[]"), "a@[1.2.3.4]");
        assert_eq!(percent_encode("ü~_", b""), "%C3%BC~_");
    }

    #[test]
    fn the_password_alphabet_is_letters_digits_and_ascii_punctuation() {
        assert_eq!(PASSWORD_CHARS.len(), 26 * 2 + 10 + 32);
        assert!(PASSWORD_CHARS.iter().all(|c| c.is_ascii_graphic()));
    }
}
