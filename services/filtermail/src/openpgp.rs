//! The OpenPGP checks: ASCII armor of an encrypted message and the walk over its packet headers.
//!
//! Nothing is decrypted: the walk only proves that the payload is a sequence of session-key
//! packets (PKESK, SKESK) closed by exactly one encrypted-data packet (SEIPD) that ends where the
//! payload ends. A literal (cleartext) packet or trailing data fails.

use base64::Engine as _;

/// Which way the mail flows; the armor rules differ slightly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Outgoing,
    Incoming,
}

const BEGIN: &str = "-----BEGIN PGP MESSAGE-----";
const END: &str = "-----END PGP MESSAGE-----";

const TAG_PKESK: u8 = 1;
const TAG_SKESK: u8 = 3;
const TAG_SEIPD: u8 = 18;

/// True if `payload` is an armored OpenPGP message whose packets pass [`check_packets`].
///
/// A `Version:` armor header is refused on outgoing mail (Delta Chat never writes one, so it
/// marks another client) and skipped on incoming mail. Any other armor header fails decoding.
pub fn check_armored(payload: &str, direction: Direction) -> bool {
    let Some(rest) = payload
        .strip_prefix(BEGIN)
        .and_then(|r| r.strip_prefix("\r\n").or_else(|| r.strip_prefix('\n')))
    else {
        return false;
    };
    let Some(mut body) = rest.trim_end_matches(['\r', '\n']).strip_suffix(END) else {
        return false;
    };
    if body.starts_with("Version: ") {
        if direction == Direction::Outgoing {
            return false;
        }
        body = body.split_once('\n').map_or("", |(_, after)| after);
    }
    let mut lines: Vec<&str> = body
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .collect();
    // The optional CRC24 line: `=` and four base64 characters.
    if lines
        .last()
        .is_some_and(|l| l.len() == 5 && l.starts_with('='))
    {
        lines.pop();
    }
    let Ok(packets) = base64::engine::general_purpose::STANDARD.decode(lines.concat()) else {
        return false;
    };
    check_packets(&packets)
}

/// True if `data` is zero or more PKESK/SKESK packets followed by one SEIPD packet that ends
/// exactly at the end of `data`. Both new-format and legacy-format packet headers are read.
pub fn check_packets(data: &[u8]) -> bool {
    let mut pos = 0;
    while pos < data.len() {
        let Some((tag, end)) = packet_end(data, pos) else {
            return false;
        };
        if end == data.len() {
            return tag == TAG_SEIPD;
        }
        if tag != TAG_PKESK && tag != TAG_SKESK {
            return false;
        }
        pos = end;
    }
    false
}

/// The tag of the packet starting at `start` and the offset just past it, or `None` when the
/// header is invalid or the packet runs past the end of `data`.
fn packet_end(data: &[u8], start: usize) -> Option<(u8, usize)> {
    let header = *data.get(start)?;
    if header & 0x80 == 0 {
        return None;
    }
    let mut pos = start + 1;
    let (tag, body_len) = if header & 0x40 != 0 {
        // New format: possibly a chain of partial body lengths, then the final length.
        loop {
            let octet = *data.get(pos)?;
            if (224..=254).contains(&octet) {
                pos = pos.checked_add(1 + (1usize << (octet & 0x1f)))?;
                continue;
            }
            let (len, size) = match octet {
                0..=191 => (usize::from(octet), 1),
                192..=223 => {
                    let second = usize::from(*data.get(pos + 1)?);
                    (((usize::from(octet) - 192) << 8) + second + 192, 2)
                }
                _ => (be_length(data.get(pos + 1..pos + 5)?), 5),
            };
            pos += size;
            break (header & 0x3f, len);
        }
    } else {
        // Legacy format: tag in bits 5-2, length type in bits 1-0.
        let size = match header & 0x03 {
            0 => 1,
            1 => 2,
            2 => 4,
            _ => return None,
        };
        let len = be_length(data.get(pos..pos + size)?);
        pos += size;
        ((header >> 2) & 0x0f, len)
    };
    let end = pos.checked_add(body_len)?;
    (end <= data.len()).then_some((tag, end))
}

fn be_length(bytes: &[u8]) -> usize {
    bytes.iter().fold(0usize, |acc, b| {
        acc.saturating_mul(256).saturating_add(usize::from(*b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_packet(tag: u8, body_len: usize) -> Vec<u8> {
        let mut p = vec![0xc0 | tag];
        match body_len {
            0..=191 => p.push(body_len as u8),
            192..=8383 => {
                let v = body_len - 192;
                p.push((v >> 8) as u8 + 192);
                p.push((v & 0xff) as u8);
            }
            _ => {
                p.push(255);
                p.extend_from_slice(&(body_len as u32).to_be_bytes());
            }
        }
        p.extend(std::iter::repeat_n(0x42, body_len));
        p
    }

    fn armor(data: &[u8], header: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        let mut out = format!("{BEGIN}\r\n{header}\r\n");
        for chunk in b64.as_bytes().chunks(76) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push_str("\r\n");
        }
        out.push_str("=njUN\r\n");
        out.push_str(END);
        out.push_str("\r\n");
        out
    }

    fn pkesk_seipd() -> Vec<u8> {
        let mut data = new_packet(TAG_PKESK, 94);
        data.extend(new_packet(TAG_PKESK, 300));
        data.extend(new_packet(TAG_SEIPD, 9000));
        data
    }

    #[test]
    fn accepts_session_keys_then_seipd() {
        assert!(check_packets(&pkesk_seipd()));
        let mut skesk = new_packet(TAG_SKESK, 30);
        skesk.extend(new_packet(TAG_SEIPD, 10));
        assert!(check_packets(&skesk));
        assert!(check_packets(&new_packet(TAG_SEIPD, 0)));
    }

    #[test]
    fn rejects_other_packet_sequences() {
        assert!(!check_packets(&[]));
        // A literal data packet, alone or after a session key.
        assert!(!check_packets(&new_packet(11, 20)));
        let mut lit = new_packet(TAG_PKESK, 20);
        lit.extend(new_packet(11, 20));
        assert!(!check_packets(&lit));
        // SEIPD that is not last, trailing bytes, truncation, SEIPD before nothing else allowed.
        let mut two = new_packet(TAG_SEIPD, 5);
        two.extend(new_packet(TAG_SEIPD, 5));
        assert!(!check_packets(&two));
        let mut trailing = pkesk_seipd();
        trailing.push(0);
        assert!(!check_packets(&trailing));
        let full = pkesk_seipd();
        assert!(!check_packets(&full[..full.len() - 1]));
        assert!(!check_packets(&[0xc0 | TAG_SEIPD]));
        assert!(!check_packets(&[0xc0 | TAG_SEIPD, 255, 0, 0]));
        // Bit 7 clear is not a packet header.
        assert!(!check_packets(&[0x12, 0]));
    }

    #[test]
    fn follows_partial_body_lengths() {
        // 2^9 = 512-byte chunk, then a final 1-octet length of 10.
        let mut data = new_packet(TAG_PKESK, 10);
        data.push(0xc0 | TAG_SEIPD);
        data.push(224 + 9);
        data.extend(std::iter::repeat_n(0u8, 512));
        data.push(10);
        data.extend(std::iter::repeat_n(0u8, 10));
        assert!(check_packets(&data));
        data.pop();
        assert!(!check_packets(&data));
        // A partial chunk running past the end.
        assert!(!check_packets(&[0xc0 | TAG_SEIPD, 224 + 30, 1, 2]));
    }

    #[test]
    fn reads_legacy_headers() {
        // Legacy headers carry tags up to 15, so SEIPD (18) is always new-format; GnuPG writes
        // legacy PKESK/SKESK headers before it.
        let mut data = vec![0x80 | (TAG_PKESK << 2) | 1, 0x01, 0x0c];
        data.extend(std::iter::repeat_n(0u8, 268));
        data.extend([0x80 | (TAG_SKESK << 2), 2, 4, 9]);
        data.extend([0x80 | (TAG_PKESK << 2) | 2, 0, 0, 0, 1, 3]);
        data.extend(new_packet(TAG_SEIPD, 20));
        assert!(check_packets(&data));
        // A legacy literal packet, and the indeterminate length type.
        assert!(!check_packets(&[0x80 | (11 << 2), 1, 9]));
        let mut indeterminate = vec![0x80 | (TAG_PKESK << 2) | 3, 1, 2];
        indeterminate.extend(new_packet(TAG_SEIPD, 2));
        assert!(!check_packets(&indeterminate));
        // A legacy length running past the end.
        assert!(!check_packets(&[0x80 | (TAG_PKESK << 2) | 1, 0xff]));
    }

    #[test]
    fn armor_cases() {
        let good = armor(&pkesk_seipd(), "");
        assert!(check_armored(&good, Direction::Outgoing));
        assert!(check_armored(&good, Direction::Incoming));

        let version = armor(&pkesk_seipd(), "Version: 1\r\n");
        assert!(!check_armored(&version, Direction::Outgoing));
        assert!(check_armored(&version, Direction::Incoming));

        let comment = armor(&pkesk_seipd(), "Comment: hello\r\n");
        assert!(!check_armored(&comment, Direction::Incoming));

        let no_crc = good.replace("=njUN\r\n", "");
        assert!(check_armored(&no_crc, Direction::Outgoing));
        let lf_only = good.replace("\r\n", "\n");
        assert!(check_armored(&lf_only, Direction::Outgoing));

        // A stray `=` inside the base64 body.
        let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
        lines[3].insert(10, '=');
        let stray = lines.join("\r\n");
        for direction in [Direction::Outgoing, Direction::Incoming] {
            assert!(!check_armored(&stray, direction));
            assert!(!check_armored(&armor(b"not openpgp at all", ""), direction));
            assert!(!check_armored("Hello, this is plain text.\r\n", direction));
            assert!(!check_armored(&good.replace(BEGIN, ""), direction));
            assert!(!check_armored(&good.replace(END, ""), direction));
            assert!(!check_armored(&armor(&new_packet(11, 40), ""), direction));
        }
    }
}
