//! Secure Endpoint v1 on the wire: the envelopes, the `errors[]` bodies, paging links, the
//! query string (keys repeat and carry `[]`, so it is parsed by hand) and time formats.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use chrono::DateTime;
use serde::Serialize;

/// The `version` member of every v1 answer.
pub(crate) const VERSION: &str = "v1.2.0";

/// The vendor's 401 body, byte for byte (note its older `version`).
pub(crate) const UNAUTHORIZED_BODY: &str = r#"{"version":"v1.0.0","data":{},"errors":[{"error_code":401,"description":"Unauthorized","details":["Unknown API key or Client ID"]}]}"#;

/// Content type of every v1 answer.
pub(crate) const JSON: &str = "application/json; charset=utf-8";

/// A JSON answer with this status and body.
pub(crate) fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    r
}

#[derive(Serialize)]
struct ErrorItem<'a> {
    error_code: u16,
    description: &'a str,
    details: [&'a str; 1],
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    version: &'static str,
    data: serde_json::Map<String, serde_json::Value>,
    errors: [ErrorItem<'a>; 1],
}

/// An answer in the vendor's `errors[]` envelope, with a detail naming the problem.
pub(crate) fn error_response(status: StatusCode, detail: &str) -> Response {
    let body = ErrorEnvelope {
        version: VERSION,
        data: serde_json::Map::new(),
        errors: [ErrorItem {
            error_code: status.as_u16(),
            description: status.canonical_reason().unwrap_or("Error"),
            details: [detail],
        }],
    };
    json_response(
        status,
        serde_json::to_string(&body).expect("an error envelope serialises"),
    )
}

/// 400 with a detail.
pub(crate) fn bad_request(detail: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, detail)
}

/// 404 with a detail.
pub(crate) fn not_found(detail: &str) -> Response {
    error_response(StatusCode::NOT_FOUND, detail)
}

/// Where a request was sent, to build `self`/`next`/`prev` as the client would reach them.
#[derive(Clone, Debug)]
pub(crate) struct RequestUrl {
    /// `http://host[:port]` from the Host header (or the request's authority).
    pub base: String,
    pub path: String,
    pub raw_query: Option<String>,
}

impl RequestUrl {
    /// Reads the request line and Host header; `fallback` is used when neither names a host.
    pub fn of(req: &axum::extract::Request, fallback: &str) -> RequestUrl {
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            })
            .filter(|h| !h.is_empty() && !h.contains(['/', ' ', '"', '\\']));
        RequestUrl {
            base: host.map_or_else(|| fallback.to_string(), |h| format!("http://{h}")),
            path: req.uri().path().to_string(),
            raw_query: req.uri().query().map(str::to_string),
        }
    }

    /// The URL as requested.
    pub fn self_url(&self) -> String {
        match &self.raw_query {
            Some(q) => format!("{}{}?{}", self.base, self.path, q),
            None => format!("{}{}", self.base, self.path),
        }
    }

    /// The same URL with only `offset` changed (appended when absent): parameters keep their
    /// order and encoding, as the vendor's links do.
    pub fn with_offset(&self, offset: usize) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut replaced = false;
        for part in self
            .raw_query
            .as_deref()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let key = url::form_urlencoded::parse(part.as_bytes())
                .next()
                .map(|(k, _)| k.into_owned());
            if key.as_deref() == Some("offset") {
                if !replaced {
                    parts.push(format!("offset={offset}"));
                    replaced = true;
                }
            } else {
                parts.push(part.to_string());
            }
        }
        if !replaced {
            parts.push(format!("offset={offset}"));
        }
        format!("{}{}?{}", self.base, self.path, parts.join("&"))
    }

    /// A URL under the same base (for `links` inside objects).
    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

/// The decoded query pairs, in order.
pub(crate) fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Every value of a repeatable parameter, given as `name[]` or `name`.
pub(crate) fn all_values<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k.strip_suffix("[]").unwrap_or(k) == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The last value of a single-valued parameter.
pub(crate) fn last_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Default and maximum page size of the vendor.
pub(crate) const MAX_LIMIT: usize = 500;

/// `limit` and `offset`: limit defaults to 500 and larger values are clamped to 500 (as the
/// vendor does); anything that is not a non-negative integer is a 400 naming the parameter.
pub(crate) fn paging(pairs: &[(String, String)]) -> Result<(usize, usize), String> {
    let limit = match last_value(pairs, "limit") {
        None => MAX_LIMIT,
        Some(v) => match v.parse::<u64>() {
            Ok(0) => {
                return Err(format!(
                    "limit must be between 1 and {MAX_LIMIT}, got '{v}'"
                ));
            }
            Ok(n) => usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT),
            Err(_) => return Err(format!("limit must be an integer, got '{v}'")),
        },
    };
    let offset = match last_value(pairs, "offset") {
        None => 0,
        Some(v) => match v.parse::<u64>() {
            Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Err(_) => return Err(format!("offset must be a non-negative integer, got '{v}'")),
        },
    };
    Ok((limit, offset))
}

/// Parses `start_date`: ISO 8601 / RFC 3339 with `Z` or `±hh:mm` (or `±hhmm`), optional
/// fraction. A `+` that arrived unencoded was decoded to a space by form decoding; it is put
/// back. Returns (epoch seconds, nanoseconds).
pub(crate) fn parse_start_date(v: &str) -> Option<(i64, u32)> {
    let parse = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
            .ok()
            .map(|d| (d.timestamp(), d.timestamp_subsec_nanos()))
    };
    let v = v.trim_start();
    parse(v).or_else(|| {
        let at = v.rfind(' ')?;
        let mut fixed = v.to_string();
        fixed.replace_range(at..=at, "+");
        parse(&fixed)
    })
}

/// ISO time with `Z`, seconds precision (computers' `install_date`, `last_seen`, reset dates).
pub(crate) fn iso_z(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[derive(Serialize)]
pub(crate) struct Links {
    #[serde(rename = "self")]
    pub self_: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
}

#[derive(Serialize)]
struct Results {
    total: usize,
    current_item_count: usize,
    index: usize,
    items_per_page: usize,
}

#[derive(Serialize)]
struct ListMetadata<'a> {
    links: &'a Links,
    results: Results,
}

#[derive(Serialize)]
struct ObjectMetadata<'a> {
    links: &'a Links,
}

/// Paging links of a list answer: `next` only when another page exists, `prev` when
/// `offset > 0`.
pub(crate) fn page_links(url: &RequestUrl, total: usize, offset: usize, limit: usize) -> Links {
    Links {
        self_: url.self_url(),
        next: (offset.saturating_add(limit) < total).then(|| url.with_offset(offset + limit)),
        prev: (offset > 0).then(|| url.with_offset(offset.saturating_sub(limit))),
    }
}

/// A list answer from pre-rendered items: `{"version","metadata":{links,results},"data":[...]}`.
pub(crate) fn list_body(
    links: &Links,
    total: usize,
    offset: usize,
    limit: usize,
    items: &[impl AsRef<str>],
) -> String {
    let meta = ListMetadata {
        links,
        results: Results {
            total,
            current_item_count: items.len(),
            index: offset,
            items_per_page: limit,
        },
    };
    let meta = serde_json::to_string(&meta).expect("metadata serialises");
    let size: usize = items.iter().map(|i| i.as_ref().len() + 1).sum();
    let mut out = String::with_capacity(size + meta.len() + 64);
    out.push_str(r#"{"version":""#);
    out.push_str(VERSION);
    out.push_str(r#"","metadata":"#);
    out.push_str(&meta);
    out.push_str(r#","data":["#);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item.as_ref());
    }
    out.push_str("]}");
    out
}

/// A single-object answer: `{"version","metadata":{"links":{"self"}},"data":{...}}`.
pub(crate) fn object_body(url: &RequestUrl, data: &impl Serialize) -> String {
    #[derive(Serialize)]
    struct Envelope<'a, T: Serialize> {
        version: &'static str,
        metadata: ObjectMetadata<'a>,
        data: &'a T,
    }
    let links = Links {
        self_: url.self_url(),
        next: None,
        prev: None,
    };
    serde_json::to_string(&Envelope {
        version: VERSION,
        metadata: ObjectMetadata { links: &links },
        data,
    })
    .expect("an object answer serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(q: Option<&str>) -> RequestUrl {
        RequestUrl {
            base: "http://h:1".into(),
            path: "/v1/events".into(),
            raw_query: q.map(str::to_string),
        }
    }

    #[test]
    fn links_keep_the_query_and_change_only_offset() {
        let u = url(Some(
            "event_type%5B%5D=1&limit=10&offset=20&start_date=2024-01-01T00%3A00%3A00%2B00%3A00",
        ));
        assert_eq!(
            u.with_offset(30),
            "http://h:1/v1/events?event_type%5B%5D=1&limit=10&offset=30&start_date=2024-01-01T00%3A00%3A00%2B00%3A00"
        );
        assert_eq!(
            url(Some("limit=5")).with_offset(5),
            "http://h:1/v1/events?limit=5&offset=5"
        );
        assert_eq!(
            url(None).with_offset(500),
            "http://h:1/v1/events?offset=500"
        );
        let l = page_links(&url(Some("limit=5&offset=5")), 11, 5, 5);
        assert_eq!(
            l.next.as_deref(),
            Some("http://h:1/v1/events?limit=5&offset=10")
        );
        assert_eq!(
            l.prev.as_deref(),
            Some("http://h:1/v1/events?limit=5&offset=0")
        );
        let last = page_links(&url(Some("limit=5&offset=10")), 11, 10, 5);
        assert!(last.next.is_none());
    }

    #[test]
    fn start_date_accepts_z_offsets_and_a_decoded_plus() {
        let z = parse_start_date("2024-03-01T10:00:00Z").unwrap();
        assert_eq!(parse_start_date("2024-03-01T10:00:00+00:00"), Some(z));
        assert_eq!(parse_start_date("2024-03-01T10:00:00 00:00"), Some(z));
        assert_eq!(parse_start_date("2024-03-01T12:00:00 02:00"), Some(z));
        assert_eq!(parse_start_date("2024-03-01T05:00:00-05:00"), Some(z));
        assert_eq!(parse_start_date("2024-03-01T10:00:00+0000"), Some(z));
        assert_eq!(
            parse_start_date("2024-03-01T10:00:00.5Z"),
            Some((z.0, 500_000_000))
        );
        assert_eq!(parse_start_date("yesterday"), None);
        assert_eq!(
            parse_start_date("2024-03-01T10:00:00"),
            None,
            "an offset is required"
        );
    }

    #[test]
    fn paging_defaults_clamps_and_rejects() {
        let p = |q: &str| paging(&query_pairs(Some(q)));
        assert_eq!(p(""), Ok((500, 0)));
        assert_eq!(p("limit=900&offset=3"), Ok((500, 3)));
        assert!(p("limit=abc").unwrap_err().contains("limit"));
        assert!(p("offset=-1").unwrap_err().contains("offset"));
        assert!(p("limit=0").is_err());
    }
}
