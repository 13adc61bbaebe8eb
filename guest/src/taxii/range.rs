//! TAXII 2.0 paging by item range: the client sends `Range: items a-b`, the
//! server answers `206` with `Content-Range: items a-b/N` (`N` may be `*`
//! when unknown), `200` with everything, or `416` past the end.

/// How the `Range` header is spelled. The TAXII 2.0 specification writes
/// `items 0-99`; some servers want the byte-range form `items=0-99`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpelling {
    /// `items 0-99`, as the specification spells it.
    Space,
    /// `items=0-99`.
    Equals,
}

impl RangeSpelling {
    /// The header value asking for items `first` to `last`, inclusive.
    pub fn header(self, first: u64, last: u64) -> String {
        match self {
            Self::Space => format!("items {first}-{last}"),
            Self::Equals => format!("items={first}-{last}"),
        }
    }

    /// The other spelling.
    pub fn other(self) -> Self {
        match self {
            Self::Space => Self::Equals,
            Self::Equals => Self::Space,
        }
    }
}

/// The items a response holds, from its `Content-Range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// Index of the first item.
    pub first: u64,
    /// Index of the last item, inclusive.
    pub last: u64,
    /// How many items match in all, when the server said.
    pub total: Option<u64>,
}

/// Parses `items a-b/N`, `items a-b/*` or `items=a-b/N`, ignoring case and
/// spaces. `None` when the value names no range of items.
pub fn parse_content_range(value: &str) -> Option<ContentRange> {
    let value = value.trim();
    let unit = value.get(..5)?;
    if !unit.eq_ignore_ascii_case("items") {
        return None;
    }
    let rest = value[5..].trim_start().trim_start_matches('=').trim();
    let (span, total) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let first: u64 = first.trim().parse().ok()?;
    let last: u64 = last.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        n => Some(n.parse().ok()?),
    };
    (first <= last).then_some(ContentRange { first, last, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spells_the_range_both_ways() {
        assert_eq!(RangeSpelling::Space.header(0, 99), "items 0-99");
        assert_eq!(RangeSpelling::Equals.header(100, 199), "items=100-199");
        assert_eq!(RangeSpelling::Space.other(), RangeSpelling::Equals);
    }

    #[test]
    fn reads_every_content_range_form() {
        let range = |first, last, total| Some(ContentRange { first, last, total });
        assert_eq!(
            parse_content_range("items 0-99/1000"),
            range(0, 99, Some(1000))
        );
        assert_eq!(
            parse_content_range("items 100-199/*"),
            range(100, 199, None)
        );
        assert_eq!(parse_content_range("Items=5-5/6"), range(5, 5, Some(6)));
        assert_eq!(
            parse_content_range(" items  0 - 9 / 10 "),
            range(0, 9, Some(10))
        );
        for bad in [
            "bytes 0-99/100",
            "items */1000",
            "items 9-0/10",
            "items 0-9",
            "items",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }
}
