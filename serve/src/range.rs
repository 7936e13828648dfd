//! `Range: bytes=…` for blob downloads (RFC 9110 §14), one range at a time.
//!
//! Clients resume broken layer downloads with a single range. A header with an invalid
//! range (`bytes=500-0`, `bytes=a-b`, `bytes=-`), or whose ranges all lie past the end,
//! gets 416, as RFC 9110 §14.2 says a server should and as distribution does. A request
//! for several ranges, one of which can be served, gets the whole blob with 200 (the RFC
//! lets a server ignore `Range`); registry clients never ask for several. A range unit
//! other than `bytes` is ignored, as the RFC requires, and so is `bytes=` with no range
//! (as distribution does). Numbers saturate instead of
//! overflowing: a last position past the end means "to the end", a first position past
//! the end is unsatisfiable.

/// What to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    /// The whole blob (200).
    Full,
    /// Bytes `start..=end` (206).
    Part {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// Every range is invalid or outside the blob (416).
    Unsatisfiable,
}

fn number(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// One range-spec: `Err` when invalid (not numbers, or last before first), `Ok(None)`
/// when it lies outside the blob.
fn one(spec: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let (first, last) = spec.split_once('-').ok_or(())?;
    if first.trim().is_empty() {
        // Suffix: the last N bytes.
        let n = number(last).ok_or(())?;
        if n == 0 || size == 0 {
            return Ok(None);
        }
        return Ok(Some((size.saturating_sub(n), size - 1)));
    }
    let start = number(first).ok_or(())?;
    let end = if last.trim().is_empty() {
        u64::MAX
    } else {
        number(last).filter(|e| *e >= start).ok_or(())?
    };
    if start >= size {
        return Ok(None);
    }
    Ok(Some((start, end.min(size - 1))))
}

/// The span a `Range` header value asks for, out of a blob of `size` bytes.
pub fn span(header: Option<&str>, size: u64) -> Span {
    let Some(h) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return Span::Full;
    };
    let Some((unit, set)) = h.split_once('=') else {
        return Span::Unsatisfiable;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Span::Full;
    }
    // Empty list elements are allowed and ignored (RFC 9110 §5.6.1); a set of nothing
    // else asks for nothing in particular.
    let specs: Vec<&str> = set
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if specs.is_empty() {
        return Span::Full;
    }
    let Ok(parsed) = specs
        .iter()
        .map(|s| one(s, size))
        .collect::<Result<Vec<_>, ()>>()
    else {
        return Span::Unsatisfiable;
    };
    let mut served = parsed.into_iter().flatten();
    match (specs.len(), served.next()) {
        (_, None) => Span::Unsatisfiable,
        (1, Some((start, end))) => Span::Part { start, end },
        _ => Span::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(start: u64, end: u64) -> Span {
        Span::Part { start, end }
    }

    #[test]
    fn single_ranges() {
        assert_eq!(span(None, 10), Span::Full);
        assert_eq!(span(Some("bytes=0-4"), 10), part(0, 4));
        assert_eq!(span(Some("bytes=3-"), 10), part(3, 9));
        assert_eq!(span(Some("bytes=-3"), 10), part(7, 9));
        assert_eq!(span(Some("bytes=-30"), 10), part(0, 9));
        assert_eq!(span(Some("BYTES=2-2"), 10), part(2, 2));
        assert_eq!(span(Some("bytes=5-100"), 10), part(5, 9));
    }

    #[test]
    fn huge_and_overflowing_values() {
        assert_eq!(
            span(Some("bytes=0-99999999999999999999999999999"), 10),
            part(0, 9)
        );
        assert_eq!(
            span(Some("bytes=99999999999999999999999999999-"), 10),
            Span::Unsatisfiable
        );
        assert_eq!(
            span(Some("bytes=18446744073709551615-18446744073709551615"), 10),
            Span::Unsatisfiable
        );
        assert_eq!(
            span(Some("bytes=-99999999999999999999999999999"), 10),
            part(0, 9)
        );
    }

    #[test]
    fn invalid_and_unsatisfiable_get_416() {
        for h in [
            "bytes=10-",
            "bytes=-0",
            "bytes=5-2",
            "bytes=500-0",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=-",
            "bytes",
            "bytes=0-1,5-2",
            "bytes=0-1,3-x",
            "bytes=10-11,12-",
            "bytes=1-2-3",
        ] {
            assert_eq!(span(Some(h), 10), Span::Unsatisfiable, "{h}");
        }
        assert_eq!(span(Some("bytes=0-"), 0), Span::Unsatisfiable);
        assert_eq!(span(Some("bytes=-5"), 0), Span::Unsatisfiable);
    }

    #[test]
    fn other_units_and_several_ranges_get_the_whole_blob() {
        for h in [
            "bytes=0-1,3-4",
            "bytes=0-1, 20-30",
            "items=0-1",
            "bytes=",
            "bytes=,",
            "",
            "  ",
        ] {
            assert_eq!(span(Some(h), 10), Span::Full, "{h}");
        }
        // Empty list elements are not ranges.
        assert_eq!(span(Some("bytes=,2-3,"), 10), part(2, 3));
    }
}
