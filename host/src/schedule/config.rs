//! A feed's schedule settings: its interval and its first run's lookback.

use std::time::{Duration, SystemTime};

use serde::Serialize;

/// The interval of a feed added without `--every`.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(3600);
/// The shortest interval a user may set: shorter ones only load servers.
pub const MIN_EVERY: Duration = Duration::from_secs(60);
/// For tests only: a shorter minimum interval (e.g. `200ms`), so that a
/// scheduler test sees several runs in seconds.
pub const MIN_EVERY_ENV: &str = "TAXII_HOST_TEST_MIN_EVERY";

/// How far back a feed's first run reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Lookback {
    /// The whole collection.
    #[default]
    All,
    /// Objects added to the server within this window before the first run.
    Window(Duration),
}

impl Lookback {
    /// The `added_after` of a first run starting at `now`, if any.
    pub fn added_after(&self, now: SystemTime) -> Option<String> {
        match self {
            Self::All => None,
            Self::Window(window) => {
                let start = now.checked_sub(*window).unwrap_or(SystemTime::UNIX_EPOCH);
                Some(humantime::format_rfc3339_micros(start).to_string())
            }
        }
    }
}

impl std::str::FromStr for Lookback {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("all") {
            return Ok(Self::All);
        }
        match humantime::parse_duration(s) {
            Ok(window) if !window.is_zero() => Ok(Self::Window(window)),
            _ => Err(format!(
                "{s:?} is not a lookback: give a window such as 30d, 12h or 1w, or `all` \
                 for the whole collection"
            )),
        }
    }
}

impl std::fmt::Display for Lookback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::Window(window) => write!(f, "{}", humantime::format_duration(*window)),
        }
    }
}

impl Serialize for Lookback {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// When a feed runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FeedSchedule {
    /// The interval between the starts of two runs (before jitter).
    #[serde(serialize_with = "as_humantime")]
    pub every: Duration,
    /// How far back the first run reads.
    pub initial_lookback: Lookback,
}

impl Default for FeedSchedule {
    fn default() -> Self {
        Self {
            every: DEFAULT_EVERY,
            initial_lookback: Lookback::All,
        }
    }
}

fn as_humantime<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

/// The shortest interval allowed in this process.
pub fn min_every() -> Duration {
    std::env::var(MIN_EVERY_ENV)
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .unwrap_or(MIN_EVERY)
}

/// Reads an interval such as `1h` or `90m`, refusing ones below the minimum.
pub fn parse_every(s: &str) -> Result<Duration, String> {
    let every = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration ({e}): write e.g. 30m, 1h or 1d"))?;
    let min = min_every();
    if every < min {
        return Err(format!(
            "{s} is too often: the shortest interval is {}, which is already more than \
             most TAXII servers publish",
            humantime::format_duration(min)
        ));
    }
    Ok(every)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_below_the_minimum_are_refused() {
        assert_eq!(parse_every("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_every("90m"), Ok(Duration::from_secs(5400)));
        let message = parse_every("10s").unwrap_err();
        assert!(message.contains("shortest interval is 1m"), "{message}");
        assert!(parse_every("often").is_err());
    }

    #[test]
    fn lookback_is_a_window_or_all() {
        assert_eq!("all".parse::<Lookback>(), Ok(Lookback::All));
        let month: Lookback = "30d".parse().unwrap();
        assert_eq!(month, Lookback::Window(Duration::from_secs(30 * 86_400)));
        assert_eq!(month.to_string(), "30days");
        assert!("0s".parse::<Lookback>().is_err());
        assert!("recent".parse::<Lookback>().is_err());
        let now = humantime::parse_rfc3339("2026-12-31T00:00:00Z").unwrap();
        assert_eq!(
            month.added_after(now).as_deref(),
            Some("2026-12-01T00:00:00.000000Z")
        );
        assert_eq!(Lookback::All.added_after(now), None);
    }
}
