//! Time as socbridge stores it: UTC, microsecond precision, an `i64` count since the Unix
//! epoch. Vendor formats are parsed at the edge into this type and never compared as strings.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A UTC instant with microsecond precision (the fixed precision of every stored time).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimestampError {
    #[error("`{0}` is not a date-time (expected RFC 3339, e.g. 2024-05-01T10:00:00Z)")]
    Unparseable(String),
    #[error("`{0}` is out of the supported time range")]
    OutOfRange(String),
}

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// `None` outside the years RFC 3339 can write (0000 to 9999), so that every time read
    /// from outside prints as RFC 3339 and reads back as itself.
    pub fn from_unix_seconds(secs: i64, nanos: u32) -> Option<Self> {
        secs.checked_mul(1_000_000)
            .and_then(|m| m.checked_add(i64::from(nanos / 1_000)))
            .and_then(Self::writable)
    }

    /// `None` outside the years RFC 3339 can write, as [`Self::from_unix_seconds`].
    pub fn from_unix_millis(millis: i64) -> Option<Self> {
        millis.checked_mul(1_000).and_then(Self::writable)
    }

    /// 0000-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z.
    fn writable(micros: i64) -> Option<Self> {
        const FIRST: i64 = -62_167_219_200_000_000;
        const LAST: i64 = 253_402_300_799_999_999;
        (FIRST..=LAST)
            .contains(&micros)
            .then_some(Timestamp(micros))
    }

    pub fn now() -> Self {
        Self::from_datetime(Utc::now())
    }

    pub fn from_datetime(dt: DateTime<Utc>) -> Self {
        Timestamp(dt.timestamp_micros())
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        // Every i64 micros value inside chrono's range round-trips; values outside cannot be
        // constructed through the parsing functions of this module.
        Utc.timestamp_micros(self.0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// Parses RFC 3339 with any offset (`Z`, `+00:00`, `-05:00`) and any number of fractional
    /// digits; fractions finer than a microsecond are truncated.
    pub fn parse_rfc3339(s: &str) -> Result<Self, TimestampError> {
        let trimmed = s.trim();
        DateTime::parse_from_rfc3339(trimmed)
            .map(|dt| Self::from_datetime(dt.with_timezone(&Utc)))
            .map_err(|_| TimestampError::Unparseable(s.to_string()))
    }

    /// Parses a date-time that may lack an offset (then it is UTC), may lack seconds, and may
    /// carry up to nine fractional digits: the formats vendors actually send.
    pub fn parse_lenient_utc(s: &str) -> Result<Self, TimestampError> {
        let trimmed = s.trim();
        if let Ok(ts) = Self::parse_rfc3339(trimmed) {
            return Ok(ts);
        }
        let no_z = trimmed.strip_suffix('Z').unwrap_or(trimmed);
        for fmt in [
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%d %H:%M",
        ] {
            if let Ok(naive) = NaiveDateTime::parse_from_str(no_z, fmt) {
                return Ok(Self::from_datetime(naive.and_utc()));
            }
        }
        // "2017-12-20T10:04Z" and similar with an explicit offset but no seconds.
        if let Some((head, offset)) = split_offset(trimmed) {
            if let Ok(naive) = NaiveDateTime::parse_from_str(head, "%Y-%m-%dT%H:%M") {
                let padded = format!("{}:00{}", naive.format("%Y-%m-%dT%H:%M"), offset);
                return Self::parse_rfc3339(&padded);
            }
        }
        Err(TimestampError::Unparseable(s.to_string()))
    }

    /// RFC 3339 in UTC with microseconds, e.g. `2024-05-01T10:00:00.123456Z`.
    pub fn to_rfc3339(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    /// RFC 3339 in UTC truncated to whole seconds, e.g. `2024-05-01T10:00:00+00:00`: the form
    /// vendor query parameters accept.
    pub fn to_rfc3339_seconds(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(SecondsFormat::Secs, false)
    }

    pub fn saturating_sub_micros(self, micros: i64) -> Self {
        Timestamp(self.0.saturating_sub(micros))
    }

    pub fn saturating_add_micros(self, micros: i64) -> Self {
        Timestamp(self.0.saturating_add(micros))
    }

    pub fn checked_sub(self, d: std::time::Duration) -> Option<Self> {
        i64::try_from(d.as_micros())
            .ok()
            .and_then(|m| self.0.checked_sub(m))
            .and_then(Self::writable)
    }
}

/// Why a "since" expression was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SinceError {
    #[error("`{0}` reaches too far back")]
    TooFarBack(String),
    #[error("`{0}` is neither a duration (24h, 90m) nor an RFC 3339 time (2024-05-01T10:00:00Z)")]
    Unparseable(String),
}

/// A "since" expression of the command line and the API: a duration back from `now` (`24h`,
/// `90m`, `2d`, as `humantime` reads them) or an RFC 3339 time.
pub fn parse_since(s: &str, now: Timestamp) -> Result<Timestamp, SinceError> {
    if let Ok(d) = humantime::parse_duration(s) {
        return now
            .checked_sub(d)
            .ok_or_else(|| SinceError::TooFarBack(s.to_string()));
    }
    Timestamp::parse_rfc3339(s).map_err(|_| SinceError::Unparseable(s.to_string()))
}

fn split_offset(s: &str) -> Option<(&str, &str)> {
    if let Some(head) = s.strip_suffix('Z') {
        return Some((head, "Z"));
    }
    let idx = s.rfind(['+', '-'])?;
    // The offset follows the time part, after the 'T'.
    if idx > s.find('T')? {
        Some((&s[..idx], &s[idx..]))
    } else {
        None
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vendor_formats_as_utc() {
        let a = Timestamp::parse_lenient_utc("2017-12-20T10:04:35.4355923+00:00").unwrap();
        let b = Timestamp::parse_lenient_utc("2017-12-20T10:04:35.435592").unwrap();
        assert_eq!(a, b, "seven fractional digits truncate to micros");
        let c = Timestamp::parse_lenient_utc("2017-12-20T10:04Z").unwrap();
        assert_eq!(c.to_rfc3339(), "2017-12-20T10:04:00.000000Z");
        let d = Timestamp::parse_lenient_utc("2021-01-14T10:33:46+01:00").unwrap();
        assert_eq!(d.to_rfc3339(), "2021-01-14T09:33:46.000000Z");
        assert!(Timestamp::parse_lenient_utc("yesterday").is_err());
    }

    #[test]
    fn unix_times_beyond_what_rfc_3339_can_write_are_refused() {
        // Found by the fuzz checks: a Secure Endpoint `timestamp` of 9e12 seconds fitted in
        // the microsecond count but printed as year -262143, and year 10000 and later print as
        // `+10000-...`, which no RFC 3339 reader takes back.
        let last = Timestamp::from_unix_seconds(253_402_300_799, 999_999_999).expect("9999");
        assert_eq!(Timestamp::parse_rfc3339(&last.to_rfc3339()), Ok(last));
        let first = Timestamp::from_unix_seconds(-62_167_219_200, 0).expect("year 0");
        assert_eq!(Timestamp::parse_rfc3339(&first.to_rfc3339()), Ok(first));
        assert_eq!(Timestamp::from_unix_seconds(253_402_300_800, 0), None);
        assert_eq!(Timestamp::from_unix_seconds(-62_167_219_201, 0), None);
        assert_eq!(Timestamp::from_unix_seconds(9_000_000_000_000, 0), None);
        assert_eq!(Timestamp::from_unix_millis(9_000_000_000_000_000), None);
        let now = Timestamp::from_unix_seconds(1_780_000_000, 0).expect("2026");
        assert_eq!(
            parse_since("3000years", now),
            Err(SinceError::TooFarBack("3000years".into()))
        );
        assert!(parse_since("1000years", now).is_ok());
    }

    #[test]
    fn unix_seconds_and_nanos_round_to_micros() {
        let t = Timestamp::from_unix_seconds(1_610_620_426, 742_000_999).unwrap();
        assert_eq!(t.as_micros(), 1_610_620_426_742_000);
        assert_eq!(t.to_rfc3339_seconds(), "2021-01-14T10:33:46+00:00");
    }
}
