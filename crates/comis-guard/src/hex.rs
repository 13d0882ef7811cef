//! Lowercase hex encoding, the one copy the workspace shares (audit hashes, ids, webhook
//! signatures, wrapper delimiters).
//!
//! Guarantees: two lowercase digits per byte, in order, never fails. Does not decode, and is
//! not constant-time: compare encoded secrets with `subtle`, not `==`.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as lowercase hex.
pub fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_lowercase_digits_per_byte() {
        assert_eq!(encode(&[0, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(encode(&[]), "");
        let all: Vec<u8> = (0..=255).collect();
        let s = encode(&all);
        assert_eq!(s.len(), 512);
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }
}
