//! Cisco Umbrella Reporting API v2: blocked (and allowed) activity of the organisations an
//! MSSP manages, read with one parent key acting for each child org.
//!
//! * [`token`]: OAuth2 client-credentials tokens in a [`TokenCache`] shared by every org of a
//!   key (one token for all of them, one refresh at a time, refreshed before expiry);
//! * [`client`]: [`UmbrellaClient`], the activity endpoints through the shared HTTP stack,
//!   acting for a child org with `X-Umbrella-OrgID` (or the legacy
//!   `/v2/organizations/{orgId}/...` paths), following the regional 302 itself so the
//!   `Authorization` header reaches the regional host;
//! * [`map`]: the pure mapping of activity records, which carry no id, to findings keyed by a
//!   documented derived key;
//! * [`error`]: [`UmbrellaError`], naming the org and what is wrong.

pub mod client;
pub mod error;
pub mod map;
pub mod token;

pub use client::{
    ActivityKind, ActivityPage, ActivityQuery, CURRENT_BASE_URL, LEGACY_REPORTS_URL,
    LEGACY_TOKEN_URL, MAX_LIMIT, MAX_REDIRECTS, ORG_HEADER, Order, PathStyle, TokenMethod,
    UmbrellaClient, UmbrellaConfig, UmbrellaHttp, error_detail, parse_activity_page,
};
pub use error::UmbrellaError;
pub use map::{
    CATEGORY_COMMAND_AND_CONTROL, CATEGORY_CRYPTOMINING, MapError, canonical_key, map_page,
    map_record, vendor_key,
};
pub use token::{IssuedToken, TokenCache, parse_token};

pub const VENDOR: &str = "Umbrella";
