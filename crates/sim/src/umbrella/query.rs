//! The parameters of `/activity`: parsed strictly (a missing or malformed one is a 400 that
//! names it), then applied to a record.

use super::data::{Kind, OrgWorld, Record, VERDICTS};
use chrono::FixedOffset;
use std::collections::HashSet;

/// Largest `limit` the service accepts.
pub(crate) const MAX_LIMIT: usize = 5000;

/// A parameter the service refuses, with the message of its 400.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ParamError {
    #[error("Missing required parameter: {0}")]
    Missing(&'static str),
    #[error("Invalid value for parameter {name}: '{value}' ({why})")]
    Invalid {
        name: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("Invalid time range: 'from' is after 'to'")]
    Range,
}

fn invalid(name: &'static str, value: &str, why: &'static str) -> ParamError {
    ParamError::Invalid {
        name,
        value: value.to_string(),
        why,
    }
}

/// A parsed `/activity` request.
#[derive(Debug)]
pub(crate) struct Params {
    pub from_ms: i64,
    pub to_ms: i64,
    pub limit: usize,
    pub offset: usize,
    pub ascending: bool,
    pub tz: FixedOffset,
    verdicts: Option<HashSet<String>>,
    categories: Option<HashSet<u32>>,
    policycategories: Option<HashSet<u32>>,
    domains: Option<Vec<String>>,
    identity_ids: Option<HashSet<u64>>,
    identity_types: Option<HashSet<String>>,
    threats: Option<HashSet<String>>,
    threat_types: Option<HashSet<String>>,
    ip: Option<String>,
}

/// `from`/`to`: epoch milliseconds, `now`, or a relative time such as `-5minutes`,
/// `-1hours`, `-2days` (seconds, minutes, hours, days and weeks; singular or plural).
pub(crate) fn parse_time(v: &str, now_ms: i64) -> Option<i64> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("now") {
        return Some(now_ms);
    }
    if let Ok(ms) = v.parse::<i64>() {
        return (ms >= 0).then_some(ms);
    }
    let rest = v.strip_prefix('-')?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let n: i64 = rest[..digits].parse().ok()?;
    let unit = rest[digits..].to_ascii_lowercase();
    let unit = unit.strip_suffix('s').unwrap_or(&unit);
    let per: i64 = match unit {
        "second" => 1_000,
        "minute" => 60_000,
        "hour" => 3_600_000,
        "day" => 86_400_000,
        "week" => 604_800_000,
        _ => return None,
    };
    now_ms.checked_sub(n.checked_mul(per)?)
}

/// `timezone`: `UTC`/`GMT`/`Etc/UTC`/`Z`, or a fixed offset (`+02:00`, `-0500`, `UTC+1`).
/// Zone names with daylight saving (`Europe/Paris`) are not known to the emulator.
pub(crate) fn parse_timezone(v: &str) -> Option<FixedOffset> {
    let v = v.trim();
    let utc = ["utc", "gmt", "etc/utc", "etc/gmt", "z", "zulu", "universal"];
    if utc.contains(&v.to_ascii_lowercase().as_str()) {
        return FixedOffset::east_opt(0);
    }
    let off = v
        .strip_prefix("UTC")
        .or_else(|| v.strip_prefix("GMT"))
        .unwrap_or(v);
    let (sign, digits) = match off.as_bytes().first()? {
        b'+' => (1, &off[1..]),
        b'-' => (-1, &off[1..]),
        _ => return None,
    };
    let (h, m) = match digits.split_once(':') {
        Some((h, m)) => (h, m),
        None if digits.len() == 4 => digits.split_at(2),
        None => (digits, "0"),
    };
    let h: i32 = h.parse().ok()?;
    let m: i32 = m.parse().ok()?;
    if h > 14 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// A comma list (empty items dropped); `None` when the parameter is absent or empty.
fn list(pairs: &[(String, String)], name: &str) -> Option<Vec<String>> {
    let v = crate::wire::last_value(pairs, name)?;
    let items: Vec<String> = v
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    (!items.is_empty()).then_some(items)
}

fn numbers<T: std::str::FromStr + std::hash::Hash + Eq>(
    pairs: &[(String, String)],
    name: &'static str,
) -> Result<Option<HashSet<T>>, ParamError> {
    let Some(items) = list(pairs, name) else {
        return Ok(None);
    };
    items
        .iter()
        .map(|s| {
            s.parse::<T>()
                .map_err(|_| invalid(name, s, "a comma list of numeric ids"))
        })
        .collect::<Result<HashSet<T>, _>>()
        .map(Some)
}

fn lower_set(pairs: &[(String, String)], name: &str) -> Option<HashSet<String>> {
    list(pairs, name).map(|v| v.into_iter().map(|s| s.to_ascii_lowercase()).collect())
}

impl Params {
    /// Parses the query string of an `/activity` request at `now_ms`.
    pub fn parse(pairs: &[(String, String)], now_ms: i64) -> Result<Params, ParamError> {
        let get = |name: &str| crate::wire::last_value(pairs, name).filter(|v| !v.is_empty());
        let time = |name: &'static str| -> Result<i64, ParamError> {
            let v = get(name).ok_or(ParamError::Missing(name))?;
            parse_time(v, now_ms).ok_or_else(|| {
                invalid(
                    name,
                    v,
                    "epoch milliseconds, 'now', or relative like -5minutes",
                )
            })
        };
        let from_ms = time("from")?;
        let to_ms = time("to")?;
        let limit_text = get("limit").ok_or(ParamError::Missing("limit"))?;
        let limit = match limit_text.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(invalid("limit", limit_text, "an integer from 1 to 5000")),
        };
        let offset = match get("offset") {
            None => 0,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map_err(|_| invalid("offset", v, "a non-negative integer"))?,
        };
        let ascending = match get("order").map(str::to_ascii_lowercase).as_deref() {
            None | Some("desc") => false,
            Some("asc") => true,
            Some(_) => return Err(invalid("order", get("order").unwrap_or(""), "asc or desc")),
        };
        let tz = match get("timezone") {
            None => FixedOffset::east_opt(0).expect("a zero offset is valid"),
            Some(v) => parse_timezone(v)
                .ok_or_else(|| invalid("timezone", v, "UTC or a fixed offset such as +02:00"))?,
        };
        let verdicts = lower_set(pairs, "verdict");
        if let Some(v) = &verdicts
            && let Some(bad) = v.iter().find(|v| !VERDICTS.contains(&v.as_str()))
        {
            return Err(invalid("verdict", bad, "allowed, blocked or proxied"));
        }
        if from_ms > to_ms {
            return Err(ParamError::Range);
        }
        Ok(Params {
            from_ms,
            to_ms,
            limit,
            offset,
            ascending,
            tz,
            verdicts,
            categories: numbers(pairs, "categories")?,
            policycategories: numbers(pairs, "policycategories")?,
            domains: list(pairs, "domains")
                .map(|v| v.into_iter().map(|s| s.to_ascii_lowercase()).collect()),
            identity_ids: numbers(pairs, "identityids")?,
            identity_types: lower_set(pairs, "identitytypes"),
            threats: lower_set(pairs, "threats"),
            threat_types: lower_set(pairs, "threattypes"),
            ip: get("ip").map(|s| s.trim().to_string()),
        })
    }

    /// Whether a record of `kinds` in the time range passes every filter.
    pub fn matches(&self, r: &Record, w: &OrgWorld, kinds: Option<Kind>) -> bool {
        if kinds.is_some_and(|k| k != r.kind) {
            return false;
        }
        if r.ts_ms < self.from_ms || r.ts_ms > self.to_ms {
            return false;
        }
        if let Some(v) = &self.verdicts
            && !v.contains(r.verdict)
        {
            return false;
        }
        if let Some(c) = &self.categories
            && !r.categories.iter().any(|id| c.contains(id))
        {
            return false;
        }
        if let Some(c) = &self.policycategories
            && !r.policycategories.iter().any(|id| c.contains(id))
        {
            return false;
        }
        if let Some(d) = &self.domains {
            let domain = r.domain.to_ascii_lowercase();
            let hit = !domain.is_empty()
                && d.iter()
                    .any(|want| domain == *want || domain.ends_with(&format!(".{want}")));
            if !hit {
                return false;
            }
        }
        let identities = || r.identities.iter().filter_map(|i| w.identities.get(*i));
        if let Some(ids) = &self.identity_ids
            && !identities().any(|i| ids.contains(&i.id))
        {
            return false;
        }
        if let Some(types) = &self.identity_types
            && !identities()
                .any(|i| types.contains(i.ty.kind) || types.contains(&i.ty.id.to_string()))
        {
            return false;
        }
        if let Some(t) = &self.threats
            && !r
                .threats
                .iter()
                .any(|(label, _)| t.contains(&label.to_ascii_lowercase()))
        {
            return false;
        }
        if let Some(t) = &self.threat_types
            && !r
                .threats
                .iter()
                .any(|(_, ty)| t.contains(&ty.to_ascii_lowercase()))
        {
            return false;
        }
        if let Some(ip) = &self.ip
            && ![&r.external_ip, &r.internal_ip, &r.destination_ip].contains(&ip)
        {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        crate::wire::query_pairs(Some(q))
    }

    #[test]
    fn relative_and_absolute_times() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_time("now", now), Some(now));
        assert_eq!(parse_time("-5minutes", now), Some(now - 300_000));
        assert_eq!(parse_time("-1hours", now), Some(now - 3_600_000));
        assert_eq!(parse_time("-1hour", now), Some(now - 3_600_000));
        assert_eq!(parse_time("-2days", now), Some(now - 172_800_000));
        assert_eq!(parse_time("1662978435000", now), Some(1_662_978_435_000));
        for bad in [
            "-5",
            "5minutes",
            "-fiveminutes",
            "-5fortnights",
            "yesterday",
            "",
        ] {
            assert_eq!(parse_time(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn required_parameters_are_named() {
        let now = 1_700_000_000_000;
        let err = |q: &str| Params::parse(&pairs(q), now).unwrap_err().to_string();
        assert!(err("to=now&limit=10").contains("from"));
        assert!(err("from=-1hours&limit=10").contains("to"));
        assert!(err("from=-1hours&to=now").contains("limit"));
        assert!(err("from=-1hours&to=now&limit=5001").contains("limit"));
        assert!(err("from=-1hours&to=now&limit=0").contains("limit"));
        assert!(err("from=-1hours&to=now&limit=10&order=up").contains("order"));
        assert!(err("from=-1hours&to=now&limit=10&verdict=maybe").contains("verdict"));
        assert!(err("from=-1hours&to=now&limit=10&categories=65,x").contains("categories"));
        assert!(err("from=soon&to=now&limit=10").contains("from"));
        assert!(err("from=now&to=-1hours&limit=10").contains("from"));
        let p = Params::parse(
            &pairs("from=-1hours&to=now&limit=10&offset=20&order=asc&timezone=%2B02:00"),
            now,
        )
        .unwrap();
        assert_eq!((p.limit, p.offset, p.ascending), (10, 20, true));
        assert_eq!(p.tz.local_minus_utc(), 7200);
    }

    #[test]
    fn timezones() {
        assert_eq!(parse_timezone("UTC").unwrap().local_minus_utc(), 0);
        assert_eq!(parse_timezone("-0500").unwrap().local_minus_utc(), -18000);
        assert_eq!(parse_timezone("UTC+1").unwrap().local_minus_utc(), 3600);
        assert!(parse_timezone("Europe/Paris").is_none());
    }
}
