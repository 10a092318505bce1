//! What can go wrong when socbridge talks to a vendor, in words a user can act on.
//!
//! Every variant names the vendor, because one socbridge polls many vendors for many tenants
//! and an error line without the vendor is useless at 3 a.m. No variant ever carries a
//! credential: details come from the vendor's answer body or from the transport, never from
//! the request we sent.

use std::time::Duration;

/// A failed call to a vendor, after the shared HTTP stack's retries and rate-limit waits.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// 401: the vendor does not accept the stored credentials.
    #[error("{vendor}: credentials refused ({detail}); check the API client id and key")]
    Unauthorized {
        vendor: &'static str,
        detail: String,
    },

    /// 403: the credentials are valid but may not do this (e.g. a read-only key asked to
    /// isolate a computer).
    #[error("{vendor}: access forbidden ({detail}); the API key lacks the permission for this")]
    Forbidden {
        vendor: &'static str,
        detail: String,
    },

    /// 404: the thing asked for does not exist at the vendor (or the base URL is wrong).
    #[error("{vendor}: not found ({detail})")]
    NotFound {
        vendor: &'static str,
        detail: String,
    },

    /// 429 and the vendor's wait would exceed what this call may wait (per wait or in total).
    /// `wait` is what the vendor asked for, so a scheduler can come back then.
    #[error(
        "{vendor}: rate limit reached; the vendor asks to wait {wait:?}, longer than this call may wait"
    )]
    RateLimited {
        vendor: &'static str,
        wait: Duration,
    },

    /// Any other non-2xx answer (after retries for 5xx).
    #[error("{vendor}: HTTP {status}: {detail}")]
    Http {
        vendor: &'static str,
        status: u16,
        detail: String,
    },

    /// No answer: connection refused or reset, timeout, TLS failure, body cut off (after
    /// retries).
    #[error("{vendor}: could not reach the API: {detail}")]
    Transport {
        vendor: &'static str,
        detail: String,
    },

    /// A 2xx answer whose body could not be understood (e.g. a truncated page), after retries.
    #[error("{vendor}: could not read the {what}: {detail}")]
    Decode {
        vendor: &'static str,
        what: String,
        detail: String,
    },

    /// The connector is configured wrongly (bad base URL, empty client id...): no request was
    /// sent.
    #[error("configuration: {detail}")]
    Config { detail: String },
}

impl ConnectorError {
    /// The credentials are the problem: retrying will not help until someone fixes them.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            ConnectorError::Unauthorized { .. } | ConnectorError::Forbidden { .. }
        )
    }

    /// Trying again later may well succeed (rate limit, outage, network trouble, a truncated
    /// body).
    pub fn is_transient(&self) -> bool {
        match self {
            ConnectorError::RateLimited { .. }
            | ConnectorError::Transport { .. }
            | ConnectorError::Decode { .. } => true,
            ConnectorError::Http { status, .. } => *status >= 500 || *status == 408,
            _ => false,
        }
    }

    /// A write may or may not have happened at the vendor: the caller must look the result up
    /// before trying again (DESIGN.md §2, promise 3), never blindly repeat it.
    ///
    /// A transport error is counted as ambiguous even when the connection was refused: being
    /// conservative costs one lookup, being wrong costs a double side effect. A 2xx answer we
    /// could not decode means the vendor most likely acted.
    pub fn is_ambiguous(&self) -> bool {
        match self {
            ConnectorError::Transport { .. } | ConnectorError::Decode { .. } => true,
            ConnectorError::Http { status, .. } => *status >= 500 || *status == 408,
            _ => false,
        }
    }

    /// The vendor this error is about, when it got as far as a vendor.
    pub fn vendor(&self) -> Option<&'static str> {
        match self {
            ConnectorError::Unauthorized { vendor, .. }
            | ConnectorError::Forbidden { vendor, .. }
            | ConnectorError::NotFound { vendor, .. }
            | ConnectorError::RateLimited { vendor, .. }
            | ConnectorError::Http { vendor, .. }
            | ConnectorError::Transport { vendor, .. }
            | ConnectorError::Decode { vendor, .. } => Some(vendor),
            ConnectorError::Config { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let v = "Secure Endpoint";
        let unauthorized = ConnectorError::Unauthorized {
            vendor: v,
            detail: "Unknown API key or Client ID".into(),
        };
        assert!(unauthorized.is_auth() && !unauthorized.is_transient());
        assert_eq!(
            unauthorized.to_string(),
            "Secure Endpoint: credentials refused (Unknown API key or Client ID); check the API client id and key"
        );
        let http503 = ConnectorError::Http {
            vendor: v,
            status: 503,
            detail: "down".into(),
        };
        assert!(http503.is_transient() && http503.is_ambiguous() && !http503.is_auth());
        let http409 = ConnectorError::Http {
            vendor: v,
            status: 409,
            detail: "already isolated".into(),
        };
        assert!(!http409.is_transient() && !http409.is_ambiguous());
        let limited = ConnectorError::RateLimited {
            vendor: v,
            wait: Duration::from_secs(600),
        };
        assert!(limited.is_transient() && !limited.is_ambiguous());
        let transport = ConnectorError::Transport {
            vendor: v,
            detail: "operation timed out".into(),
        };
        assert!(transport.is_transient() && transport.is_ambiguous());
        assert_eq!(transport.vendor(), Some(v));
    }
}
