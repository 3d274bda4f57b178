//! Random strings and identifiers from the operating system's generator.

use anyhow::{Context, Result};

/// `len` characters drawn uniformly from `alphabet` (at most 256 distinct bytes).
pub fn string(alphabet: &[u8], len: usize) -> Result<String> {
    debug_assert!(!alphabet.is_empty() && alphabet.len() <= 256);
    // Reject bytes from the incomplete last round of the alphabet so that every
    // character is equally likely.
    let limit = 256 - 256 % alphabet.len();
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).context("reading the system's random generator")?;
        for &byte in &buf {
            if out.len() == len {
                break;
            }
            if usize::from(byte) < limit {
                out.push(char::from(alphabet[usize::from(byte) % alphabet.len()]));
            }
        }
    }
    Ok(out)
}

/// A random 128-bit identifier in lower-case hex, like a UUID4's hex form.
pub fn hex_id() -> Result<String> {
    let mut buf = [0u8; 16];
    getrandom::fill(&mut buf).context("reading the system's random generator")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_use_only_the_alphabet_and_differ() {
        let a = string(b"ab", 64).unwrap();
        let b = string(b"ab", 64).unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c == b'a' || c == b'b'));
        assert!(a.contains('a') && a.contains('b'));
        assert_ne!(a, b);
    }

    #[test]
    fn hex_ids_are_32_hex_digits() {
        let id = hex_id().unwrap();
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(id, hex_id().unwrap());
    }
}
