//! Comparing secrets (tokens, keys) that a caller presents.

/// Whether `presented` equals `secret`, compared without an early exit, so the answer's
/// timing does not reveal how many leading bytes of a guess were right. (A length
/// mismatch answers at once: lengths are not secret here.)
pub fn constant_time_eq(presented: &[u8], secret: &[u8]) -> bool {
    if presented.len() != secret.len() {
        return false;
    }
    let diff = presented.iter().zip(secret).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the optimizer from turning the fold back into a loop that stops early.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn equal_only_when_every_byte_and_the_length_match() {
        assert!(constant_time_eq(b"token-123", b"token-123"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"token-124", b"token-123"));
        assert!(!constant_time_eq(b"Token-123", b"token-123"));
        assert!(!constant_time_eq(b"token-12", b"token-123"));
        assert!(!constant_time_eq(b"token-1234", b"token-123"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
