//! Everything that can go wrong with the Umbrella client, each case in words that say which
//! organisation and what is wrong.
//!
//! Three questions decide what a caller does: [`UmbrellaError::is_bad_input`] (what the
//! operator gave is wrong: fix the configuration), [`UmbrellaError::is_auth`] (the key, or its
//! delegation for one org, is refused: polling that org is useless until someone acts) and
//! [`UmbrellaError::is_transient`] (try again later). No variant carries the secret or a
//! token.

use crate::ConnectorError;

/// How an error names the organisation a request was for.
pub(crate) fn org_name(org: &Option<String>) -> String {
    match org {
        Some(id) => format!("org {id}"),
        None => "the key's own organisation".to_string(),
    }
}

/// An Umbrella client failure.
#[derive(Debug, thiserror::Error)]
pub enum UmbrellaError {
    /// A base or token URL is not an http(s) URL.
    #[error("Umbrella {what} URL `{url}` {detail}; give e.g. https://api.umbrella.com")]
    BadUrl {
        what: &'static str,
        url: String,
        detail: String,
    },

    /// The API key or secret is empty: nothing was sent.
    #[error(
        "Umbrella credentials incomplete: the API {what} is empty; give the key and secret of an API key with the Reports scope"
    )]
    MissingCredential { what: &'static str },

    /// An org id that cannot be sent (empty, or characters no org id has).
    #[error("Umbrella org id `{org}` is not valid: {detail}")]
    BadOrgId { org: String, detail: String },

    /// The legacy `/v2/organizations/{orgId}/...` paths need the org id in the path.
    #[error(
        "Umbrella legacy reporting paths need an org id (/v2/organizations/{{orgId}}/...); give the org id of the source"
    )]
    MissingOrgId,

    /// The activity query itself is wrong (limit out of range, `from` after `to`...).
    #[error("Umbrella activity query for {}: {detail}", org_name(org))]
    BadQuery { org: Option<String>, detail: String },

    /// The token endpoint does not exist at the configured URL.
    #[error(
        "Umbrella token endpoint not found at {url} (HTTP 404: {detail}); check the base URL or token URL"
    )]
    TokenEndpointNotFound { url: String, detail: String },

    /// The token endpoint refused the key and secret (401, 403, or 400 `invalid_client`).
    #[error(
        "Umbrella refused the API key and secret at the token endpoint (HTTP {status}: {detail}); check the key and secret, and that the key is not expired or deleted"
    )]
    TokenRefused { status: u16, detail: String },

    /// The token endpoint answered 2xx with something that is not a token.
    #[error("Umbrella token endpoint answered without a usable token: {detail}")]
    TokenMalformed { detail: String },

    /// The reports API refused a freshly obtained token (401 twice).
    #[error(
        "Umbrella refused the key's token for {} (HTTP 401: {detail}); check that the key has the Reports scope and is not expired",
        org_name(org)
    )]
    Unauthorized { org: Option<String>, detail: String },

    /// 403 for a child org: the parent key may not act for it (the delegation was revoked, or
    /// the org was never delegated to this key, or the org id is wrong). Not retried.
    #[error(
        "Umbrella org {org} revoked or not delegated to this key (HTTP 403: {detail}); check the child org id and that the MSSP parent key still manages it"
    )]
    OrgNotDelegated { org: String, detail: String },

    /// 403 for the key's own organisation: the key lacks the scope.
    #[error(
        "Umbrella forbade the request for the key's own organisation (HTTP 403: {detail}); give the key the Reports read scope"
    )]
    Forbidden { detail: String },

    /// Redirects that do not end (or a `Location` that cannot be followed).
    #[error("Umbrella redirect for {} not followed: {detail}", org_name(org))]
    Redirect { org: Option<String>, detail: String },

    /// A 2xx answer carrying an error (the legacy `{"data":{"error":"..."}}`).
    #[error("Umbrella answered for {} with an error: {detail}", org_name(org))]
    Api { org: Option<String>, detail: String },

    /// Any other failure of the shared HTTP stack (rate limit after its waits, other HTTP
    /// statuses, network, an unreadable page), with the org it concerned.
    #[error("{source} ({})", org_name(org))]
    Service {
        org: Option<String>,
        #[source]
        source: ConnectorError,
    },
}

impl UmbrellaError {
    /// What the operator gave is wrong: retrying cannot help until someone fixes it.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            UmbrellaError::BadUrl { .. }
                | UmbrellaError::MissingCredential { .. }
                | UmbrellaError::BadOrgId { .. }
                | UmbrellaError::MissingOrgId
                | UmbrellaError::BadQuery { .. }
                | UmbrellaError::TokenEndpointNotFound { .. }
        ) || matches!(
            self,
            UmbrellaError::Service {
                source: ConnectorError::Config { .. },
                ..
            }
        )
    }

    /// The key (or its delegation for this org) is refused: polling is useless until someone
    /// fixes the key or the delegation. [`UmbrellaError::OrgNotDelegated`] concerns one org
    /// only: the key's other orgs are unaffected.
    pub fn is_auth(&self) -> bool {
        match self {
            UmbrellaError::TokenRefused { .. }
            | UmbrellaError::Unauthorized { .. }
            | UmbrellaError::OrgNotDelegated { .. }
            | UmbrellaError::Forbidden { .. } => true,
            UmbrellaError::Service { source, .. } => source.is_auth(),
            _ => false,
        }
    }

    /// The org was revoked or never delegated to this key: stop polling that org only.
    pub fn is_org_revoked(&self) -> bool {
        matches!(self, UmbrellaError::OrgNotDelegated { .. })
    }

    /// Trying again later may well succeed (rate limit, outage, network, a garbled answer).
    pub fn is_transient(&self) -> bool {
        match self {
            UmbrellaError::TokenMalformed { .. } => true,
            UmbrellaError::Service { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    /// The org the failed request was for, when it named one.
    pub fn org_id(&self) -> Option<&str> {
        match self {
            UmbrellaError::BadOrgId { org, .. } | UmbrellaError::OrgNotDelegated { org, .. } => {
                Some(org)
            }
            UmbrellaError::BadQuery { org, .. }
            | UmbrellaError::Unauthorized { org, .. }
            | UmbrellaError::Redirect { org, .. }
            | UmbrellaError::Api { org, .. }
            | UmbrellaError::Service { org, .. } => org.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_and_words() {
        let revoked = UmbrellaError::OrgNotDelegated {
            org: "8123456".into(),
            detail: "Forbidden".into(),
        };
        assert!(revoked.is_auth() && revoked.is_org_revoked() && !revoked.is_transient());
        assert!(
            revoked
                .to_string()
                .contains("org 8123456 revoked or not delegated to this key")
        );
        assert_eq!(revoked.org_id(), Some("8123456"));

        let limited = UmbrellaError::Service {
            org: Some("42".into()),
            source: ConnectorError::RateLimited {
                vendor: super::super::VENDOR,
                wait: std::time::Duration::from_secs(1),
            },
        };
        assert!(limited.is_transient() && !limited.is_auth() && !limited.is_bad_input());
        assert!(limited.to_string().ends_with("(org 42)"), "{limited}");

        let missing = UmbrellaError::MissingCredential { what: "secret" };
        assert!(missing.is_bad_input() && !missing.is_auth());
        let refused = UmbrellaError::TokenRefused {
            status: 401,
            detail: "Unauthorized".into(),
        };
        assert!(refused.is_auth() && !refused.is_transient());
        let own = UmbrellaError::Unauthorized {
            org: None,
            detail: "x".into(),
        };
        assert!(own.to_string().contains("the key's own organisation"));
    }
}
