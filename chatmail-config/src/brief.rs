//! Text shortened for messages: a bad value is named, never echoed whole.

/// How many characters of a value a message shows.
const SHOWN_CHARS: usize = 100;

/// `text` itself when short, else its start and how long it is.
pub fn brief(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((end, _)) => format!("{}… ({} bytes)", &text[..end], text.len()),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_and_long_text_cut_on_a_character_boundary() {
        assert_eq!(brief("relay.example.org"), "relay.example.org");
        let long = "ä".repeat(1_000_000);
        let shown = brief(&long);
        assert_eq!(shown, format!("{}… (2000000 bytes)", "ä".repeat(100)));
    }
}
