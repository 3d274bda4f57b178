//! `{SHA512-CRYPT}` password hashes: glibc's `$6$<salt>$<hash>` with the default 5000 rounds,
//! which Dovecot verifies itself.

use anyhow::Result;

/// The crypt base64 alphabet (also the salt alphabet).
const CRYPT64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The Dovecot scheme prefix stored in front of every hash.
pub const SCHEME: &str = "{SHA512-CRYPT}";

/// Hashes `password` with a fresh 16-character salt: `{SHA512-CRYPT}$6$<salt>$<86 chars>`.
pub fn hash_password(password: &str) -> Result<String> {
    let salt = crate::random::string(CRYPT64, 16)?;
    Ok(format!("{SCHEME}{}", sha512_crypt(password, &salt)))
}

/// `$6$<salt>$<hash>` for the default 5000 rounds (so without a `rounds=` field).
pub fn sha512_crypt(password: &str, salt: &str) -> String {
    let digest = sha_crypt::sha512_crypt(
        password.as_bytes(),
        salt.as_bytes(),
        sha_crypt::Params::RECOMMENDED,
    );
    // The byte triples of the digest in the order the SHA-crypt specification encodes them.
    const ORDER: [(usize, usize, usize); 21] = [
        (0, 21, 42),
        (22, 43, 1),
        (44, 2, 23),
        (3, 24, 45),
        (25, 46, 4),
        (47, 5, 26),
        (6, 27, 48),
        (28, 49, 7),
        (50, 8, 29),
        (9, 30, 51),
        (31, 52, 10),
        (53, 11, 32),
        (12, 33, 54),
        (34, 55, 13),
        (56, 14, 35),
        (15, 36, 57),
        (37, 58, 16),
        (59, 17, 38),
        (18, 39, 60),
        (40, 61, 19),
        (62, 20, 41),
    ];
    let salt = &salt[..salt.len().min(16)];
    let mut out = String::with_capacity(3 + salt.len() + 1 + 86);
    out.push_str("$6$");
    out.push_str(salt);
    out.push('$');
    let mut push = |b2: u8, b1: u8, b0: u8, chars: usize| {
        let mut w = (u32::from(b2) << 16) | (u32::from(b1) << 8) | u32::from(b0);
        for _ in 0..chars {
            out.push(char::from(CRYPT64[(w & 0x3f) as usize]));
            w >>= 6;
        }
    };
    for (a, b, c) in ORDER {
        push(digest[a], digest[b], digest[c], 4);
    }
    push(0, 0, digest[63], 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_specifications_test_vector() {
        // Test vector from the SHA-crypt specification (default rounds, salt "saltstring").
        assert_eq!(
            sha512_crypt("Hello world!", "saltstring"),
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
        );
    }

    #[test]
    fn fresh_hashes_have_dovecots_shape() {
        let hash = hash_password("p4ssw0rd!").unwrap();
        let rest = hash.strip_prefix("{SHA512-CRYPT}$6$").unwrap();
        let (salt, digest) = rest.split_once('$').unwrap();
        assert_eq!(salt.len(), 16);
        assert_eq!(digest.len(), 86);
        assert!(
            salt.bytes()
                .chain(digest.bytes())
                .all(|c| CRYPT64.contains(&c))
        );
        assert_ne!(hash, hash_password("p4ssw0rd!").unwrap());
    }
}
