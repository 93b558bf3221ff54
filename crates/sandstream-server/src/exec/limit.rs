//! How much of an execution's output is kept (`--max-output-bytes`), and what it says
//! when the rest is cut.

/// The part of `data` that fits when `stored` bytes of an execution's output are kept
/// already and at most `limit` may be, cut at a character boundary; and whether it was
/// cut.
pub(super) fn within_limit(data: &str, stored: u64, limit: u64) -> (&str, bool) {
    let room = limit.saturating_sub(stored);
    if data.len() as u64 <= room {
        return (data, false);
    }
    let mut n = room as usize;
    while !data.is_char_boundary(n) {
        n -= 1;
    }
    (&data[..n], true)
}

/// Why an execution's output was cut: the note on its stderr and its `error`.
pub(super) fn limit_reached(limit: u64) -> String {
    format!(
        "the execution's output reached the server's limit of {limit} bytes (--max-output-bytes), so the program was stopped"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_kept_up_to_the_limit_and_cut_on_a_character_boundary() {
        // Room for all of it, exactly to the limit: nothing is cut.
        assert_eq!(within_limit("abcd", 6, 10), ("abcd", false));
        assert_eq!(within_limit("", 10, 10), ("", false));
        // Past it: the bytes up to the limit.
        assert_eq!(within_limit("abcdef", 6, 10), ("abcd", true));
        assert_eq!(within_limit("a", 10, 10), ("", true));
        assert_eq!(within_limit("a", 11, 10), ("", true));
        // "é" is two bytes and "€" three: a limit inside one keeps the text before it.
        assert_eq!(within_limit("aé", 8, 10), ("a", true));
        assert_eq!(within_limit("a€b", 7, 10), ("a", true));
        assert_eq!(within_limit("a€b", 6, 10), ("a€", true));
    }
}
