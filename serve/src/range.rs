//! `Range: bytes=…` for blob downloads (RFC 9110 §14), one range at a time.
//!
//! Clients resume broken layer downloads with a single range; a multi-range request, or a
//! header that does not parse, is ignored and the whole blob is sent (which the RFC
//! allows), rather than refused. Numbers saturate instead of overflowing: a last position
//! past the end means "to the end", a first position past the end is unsatisfiable.

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
    /// Nothing of the blob is in the range (416).
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

/// The span a `Range` header value asks for, out of a blob of `size` bytes.
pub fn span(header: Option<&str>, size: u64) -> Span {
    let Some(h) = header else {
        return Span::Full;
    };
    let h = h.trim();
    let Some(spec) = h
        .get(..6)
        .filter(|u| u.eq_ignore_ascii_case("bytes="))
        .map(|_| &h[6..])
    else {
        return Span::Full;
    };
    if spec.contains(',') {
        return Span::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Span::Full;
    };
    if first.trim().is_empty() {
        // Suffix: the last N bytes.
        return match number(last) {
            None => Span::Full,
            Some(0) => Span::Unsatisfiable,
            Some(_) if size == 0 => Span::Unsatisfiable,
            Some(n) => Span::Part {
                start: size.saturating_sub(n),
                end: size - 1,
            },
        };
    }
    let Some(start) = number(first) else {
        return Span::Full;
    };
    let end = if last.trim().is_empty() {
        u64::MAX
    } else {
        match number(last) {
            Some(e) if e >= start => e,
            _ => return Span::Full,
        }
    };
    if start >= size {
        return Span::Unsatisfiable;
    }
    Span::Part {
        start,
        end: end.min(size - 1),
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
    fn unsatisfiable_and_ignored() {
        assert_eq!(span(Some("bytes=10-"), 10), Span::Unsatisfiable);
        assert_eq!(span(Some("bytes=-0"), 10), Span::Unsatisfiable);
        assert_eq!(span(Some("bytes=0-"), 0), Span::Unsatisfiable);
        assert_eq!(span(Some("bytes=-5"), 0), Span::Unsatisfiable);
        // Ignored: whole blob.
        for h in [
            "bytes=5-2",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=",
            "bytes=-",
            "bytes",
            "",
        ] {
            assert_eq!(span(Some(h), 10), Span::Full, "{h}");
        }
    }
}
