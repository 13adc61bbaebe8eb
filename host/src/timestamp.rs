//! STIX and TAXII timestamps in the two fixed-width forms the stores use,
//! so that they compare as text in time order:
//!
//! - object versions: `YYYY-MM-DDTHH:MM:SS.fffffffffZ` (nine digits), the
//!   `{version}` of `object/{id}/{version}` keys;
//! - `added_at`, when the host committed an entry:
//!   `YYYY-MM-DDTHH:MM:SS.ffffffZ` (six digits), as [`crate::now_rfc3339`]
//!   writes it.

/// A timestamp with exactly nine fractional digits (the form of the
/// plugin's object keys, see `canonical_timestamp` in guest/src/stix.rs,
/// which is stricter: this one reads what people type), or `None` when `value`
/// is not an RFC 3339 UTC timestamp (`Z`, or an offset of `+00:00`).
pub fn canonical(value: &str) -> Option<String> {
    let body = value
        .strip_suffix(['Z', 'z'])
        .or_else(|| value.strip_suffix("+00:00"))
        .or_else(|| value.strip_suffix("-00:00"))?;
    let (seconds, fraction) = match body.split_once('.') {
        Some((s, f)) if !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit()) => (s, f),
        Some(_) => return None,
        None => (body, ""),
    };
    if !is_date_time(seconds) {
        return None;
    }
    let digits: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(9)
        .collect();
    Some(format!("{}T{}.{digits}Z", &seconds[..10], &seconds[11..]))
}

/// Like [`canonical`], but a plain date (`2024-01-31`) is accepted too, as
/// its midnight: what a person types in a query.
pub fn canonical_or_date(value: &str) -> Option<String> {
    if value.len() == 10 && is_date(value) {
        return Some(format!("{value}T00:00:00.000000000Z"));
    }
    canonical(value)
}

/// The same instant, cut to microseconds: the form of `added_at`. Cutting
/// is exact for "added after": an entry committed at a whole microsecond
/// is after `t` exactly when it is after `t` cut to microseconds.
pub fn to_micros(canonical: &str) -> String {
    // A canonical timestamp is ASCII of fixed width: 26 bytes up to the
    // sixth fractional digit, then three more digits and `Z`.
    match canonical.get(..26) {
        Some(head) => format!("{head}Z"),
        None => canonical.to_string(),
    }
}

/// `YYYY-MM-DD` with plausible month and day.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(range)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && number(0..4).is_some()
        && number(5..7).is_some_and(|m| (1..=12).contains(&m))
        && number(8..10).is_some_and(|d| (1..=31).contains(&d))
}

/// `YYYY-MM-DDTHH:MM:SS` with plausible fields.
fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    let two = |at: usize, max: u32| {
        s.get(at..at + 2)
            .filter(|p| p.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|n| n <= max)
    };
    b.len() == 19
        && s.get(..10).is_some_and(is_date)
        && matches!(b[10], b'T' | b't')
        && b[13] == b':'
        && b[16] == b':'
        && two(11, 23)
        && two(14, 59)
        && two(17, 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_timestamps_have_nine_digits_and_sort_as_text() {
        assert_eq!(
            canonical("2024-01-31T12:00:00Z").as_deref(),
            Some("2024-01-31T12:00:00.000000000Z")
        );
        assert_eq!(
            canonical("2024-01-31T12:00:00.123+00:00").as_deref(),
            Some("2024-01-31T12:00:00.123000000Z")
        );
        assert_eq!(
            canonical("2024-01-31t12:00:00.1234567891z").as_deref(),
            Some("2024-01-31T12:00:00.123456789Z")
        );
        let a = canonical("2024-01-31T12:00:00.9Z").unwrap();
        let b = canonical("2024-01-31T12:00:01Z").unwrap();
        assert!(a < b);
    }

    #[test]
    fn refuses_what_is_not_a_utc_timestamp() {
        for bad in [
            "",
            "2024-01-31",
            "2024-01-31T12:00:00",
            "2024-01-31T12:00:00+02:00",
            "2024-13-01T00:00:00Z",
            "2024-01-31T25:00:00Z",
            "2024-01-31T12:00:00.Z",
            "2024-01-31 12:00:00Z",
            "yesterday",
        ] {
            assert_eq!(canonical(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_date_is_its_midnight_and_micros_cut_the_rest() {
        assert_eq!(
            canonical_or_date("2024-01-01").as_deref(),
            Some("2024-01-01T00:00:00.000000000Z")
        );
        assert_eq!(canonical_or_date("2024-1-01"), None);
        let t = canonical("2024-06-01T00:00:00.123456789Z").unwrap();
        assert_eq!(to_micros(&t), "2024-06-01T00:00:00.123456Z");
        let stored = crate::now_rfc3339();
        assert_eq!(to_micros(&canonical(&stored).unwrap()), stored);
    }
}
