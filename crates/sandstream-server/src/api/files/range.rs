//! `Range: bytes=…` of a file download (RFC 9110 §14): one range, `a-b`, `a-` or `-n`.
//! Anything else (several ranges, another unit, bad syntax) is ignored, as the RFC
//! allows, and the whole file is sent.

/// What a `Range` header asks of a file of a known size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ranged {
    /// No usable `Range`: the whole file, 200.
    Whole,
    /// `length` bytes from `start`, 206 with `Content-Range: bytes start-end/size`.
    Part { start: u64, length: u64 },
    /// A range that lies past the end (or an empty file, or `-0`): 416.
    Unsatisfiable,
}

/// A parsed single range, before the file's size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spec {
    /// `a-b` (`last` inclusive) or `a-` (`last` is `None`).
    From { first: u64, last: Option<u64> },
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

/// The one range of `header`, or `None` when it is to be ignored.
pub(crate) fn parse(header: &str) -> Option<Spec> {
    let (unit, set) = header.trim().split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") || set.contains(',') {
        return None;
    }
    let (a, b) = set.trim().split_once('-')?;
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return Some(Spec::Suffix(number(b)?));
    }
    let first = number(a)?;
    let last = if b.is_empty() { None } else { Some(number(b)?) };
    if last.is_some_and(|l| l < first) {
        return None; // invalid syntax per RFC 9110 §14.1.1: ignored
    }
    Some(Spec::From { first, last })
}

/// What `spec` asks of a file of `size` bytes.
pub(crate) fn resolve(spec: Option<Spec>, size: u64) -> Ranged {
    match spec {
        None => Ranged::Whole,
        Some(Spec::Suffix(0)) => Ranged::Unsatisfiable,
        Some(Spec::Suffix(_)) if size == 0 => Ranged::Unsatisfiable,
        Some(Spec::Suffix(n)) => {
            let length = n.min(size);
            Ranged::Part { start: size - length, length }
        }
        Some(Spec::From { first, .. }) if first >= size => Ranged::Unsatisfiable,
        Some(Spec::From { first, last }) => {
            let end = last.map_or(size - 1, |l| l.min(size - 1));
            Ranged::Part { start: first, length: end - first + 1 }
        }
    }
}

/// `Content-Range` of a part.
pub(crate) fn content_range(start: u64, length: u64, size: u64) -> String {
    format!("bytes {start}-{}/{size}", start + length - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(header: &str, size: u64) -> Ranged {
        resolve(parse(header), size)
    }

    #[test]
    fn single_ranges_of_each_form() {
        assert_eq!(r("bytes=0-9", 100), Ranged::Part { start: 0, length: 10 });
        assert_eq!(r("bytes=10-", 100), Ranged::Part { start: 10, length: 90 });
        assert_eq!(r("bytes=-10", 100), Ranged::Part { start: 90, length: 10 });
        assert_eq!(r("bytes=99-99", 100), Ranged::Part { start: 99, length: 1 });
        assert_eq!(r(" Bytes = 5 - 6 ", 100), Ranged::Part { start: 5, length: 2 });
    }

    #[test]
    fn ranges_past_the_end_are_clipped_or_unsatisfiable() {
        assert_eq!(r("bytes=90-1000", 100), Ranged::Part { start: 90, length: 10 });
        assert_eq!(r("bytes=-1000", 100), Ranged::Part { start: 0, length: 100 });
        assert_eq!(r("bytes=100-", 100), Ranged::Unsatisfiable);
        assert_eq!(r("bytes=100-200", 100), Ranged::Unsatisfiable);
        assert_eq!(r("bytes=0-", 0), Ranged::Unsatisfiable);
        assert_eq!(r("bytes=-5", 0), Ranged::Unsatisfiable);
        assert_eq!(r("bytes=-0", 100), Ranged::Unsatisfiable);
        assert_eq!(r(&format!("bytes={}-", u64::MAX), 100), Ranged::Unsatisfiable);
        assert_eq!(r(&format!("bytes=0-{}", u64::MAX), 100), Ranged::Part { start: 0, length: 100 });
    }

    #[test]
    fn what_is_not_one_byte_range_is_ignored() {
        for h in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=1-2,4-5",
            "items=0-1",
            "bytes=5-1",
            "bytes=+1-2",
            "bytes=1--2",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(r(h, 100), Ranged::Whole, "{h:?}");
        }
    }

    #[test]
    fn content_range_names_the_last_byte_inclusively() {
        assert_eq!(content_range(0, 10, 100), "bytes 0-9/100");
        assert_eq!(content_range(99, 1, 100), "bytes 99-99/100");
    }
}
