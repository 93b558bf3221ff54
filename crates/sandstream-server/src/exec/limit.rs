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
