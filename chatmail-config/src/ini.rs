//! A small INI reader that keeps line numbers, so errors can point at the offending line.
//!
//! The dialect is the one upstream's `iniconfig` accepts: `[section]` headers, `key = value`
//! (or `key: value`) entries, whole-line `#`/`;` comments, and indented continuation lines that
//! extend the previous value.

use std::fmt;

use crate::brief;

/// One `key = value` entry with the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key, surrounding white space removed.
    pub key: String,
    /// The value, trimmed; continuation lines joined with `\n`.
    pub value: String,
    /// The line the key is on.
    pub line: usize,
}

/// A `[name]` section and its entries, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The name between the brackets, trimmed.
    pub name: String,
    /// The line of the header.
    pub line: usize,
    /// The section's settings in file order.
    pub entries: Vec<Entry>,
}

/// A line the reader could not make sense of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// The offending line (1-based).
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Reads INI text into its sections.
pub fn parse(text: &str) -> Result<Vec<Section>, SyntaxError> {
    let mut sections: Vec<Section> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let continues = raw.starts_with([' ', '\t']);
        if continues {
            let Some(entry) = sections.last_mut().and_then(|s| s.entries.last_mut()) else {
                return Err(SyntaxError {
                    line,
                    message: format!("indented line {:?} continues no setting", brief(trimmed)),
                });
            };
            if !entry.value.is_empty() {
                entry.value.push('\n');
            }
            entry.value.push_str(trimmed);
            continue;
        }
        if let Some(header) = trimmed.strip_prefix('[') {
            let Some(name) = header.strip_suffix(']') else {
                return Err(SyntaxError {
                    line,
                    message: format!("section header {:?} lacks its closing ']'", brief(trimmed)),
                });
            };
            sections.push(Section {
                name: name.trim().to_owned(),
                line,
                entries: Vec::new(),
            });
            continue;
        }
        let Some(split) = trimmed.find(['=', ':']) else {
            return Err(SyntaxError {
                line,
                message: format!("expected `key = value`, found {:?}", brief(trimmed)),
            });
        };
        let key = trimmed[..split].trim();
        if key.is_empty() {
            return Err(SyntaxError {
                line,
                message: format!("setting without a name: {:?}", brief(trimmed)),
            });
        }
        let Some(section) = sections.last_mut() else {
            return Err(SyntaxError {
                line,
                message: format!("setting {:?} comes before any [section] header", brief(key)),
            });
        };
        section.entries.push(Entry {
            key: key.to_owned(),
            value: trimmed[split + 1..].trim().to_owned(),
            line,
        });
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sections_entries_and_continuations() {
        let text = "# comment\n[params]\nmail_domain = example.org\n; other\nlist: a\n  b\n\n[other]\nx=1\n";
        let sections = parse(text).unwrap();
        assert_eq!(sections.len(), 2);
        assert_eq!(sections[0].name, "params");
        assert_eq!(
            sections[0].entries,
            vec![
                Entry {
                    key: "mail_domain".into(),
                    value: "example.org".into(),
                    line: 3
                },
                Entry {
                    key: "list".into(),
                    value: "a\nb".into(),
                    line: 5
                },
            ]
        );
        assert_eq!(sections[1].entries[0].line, 9);
    }

    #[test]
    fn rejects_lines_that_are_not_settings() {
        let err = parse("[params]\njust words\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("key = value"), "{err}");
        let err = parse("x = 1\n").unwrap_err();
        assert!(err.message.contains("before any [section]"), "{err}");
        let err = parse("[params\n").unwrap_err();
        assert!(err.message.contains("closing"), "{err}");
        let err = parse("  dangling\n").unwrap_err();
        assert!(err.message.contains("continues no setting"), "{err}");
    }

    #[test]
    fn a_huge_bad_line_is_not_echoed() {
        let err = parse(&format!("[params]\n{}\n", "x".repeat(10_000_000))).unwrap_err();
        assert!(err.message.len() < 200, "{}", err.message.len());
        assert!(
            err.message.ends_with("… (10000000 bytes)\""),
            "{}",
            err.message
        );
    }

    #[test]
    fn empty_values_are_kept() {
        let sections = parse("[params]\nprivacy_mail =\n").unwrap();
        assert_eq!(sections[0].entries[0].value, "");
    }
}
