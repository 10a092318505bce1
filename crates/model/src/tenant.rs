//! Validated names for tenants and sources. Names appear in ticket correlation ids, metric
//! labels and URLs, so they are restricted to a safe alphabet at the edge.

use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("{what} name must not be empty")]
    Empty { what: &'static str },
    #[error("{what} name `{name}` is longer than 40 characters")]
    TooLong { what: &'static str, name: String },
    #[error(
        "{what} name `{name}` may only hold lowercase letters, digits, `-` and `_`, and must start with a letter or digit"
    )]
    BadCharacter { what: &'static str, name: String },
}

fn validate(what: &'static str, s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty { what });
    }
    if s.len() > 40 {
        return Err(NameError::TooLong {
            what,
            name: s.to_string(),
        });
    }
    let ok_first = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok_rest = s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !(ok_first && ok_rest) {
        return Err(NameError::BadCharacter {
            what,
            name: s.to_string(),
        });
    }
    Ok(())
}

macro_rules! name_type {
    ($ty:ident, $what:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $ty(String);

        impl $ty {
            pub fn new(s: impl Into<String>) -> Result<Self, NameError> {
                let s = s.into();
                validate($what, &s)?;
                Ok(Self(s))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(TenantName, "tenant");
name_type!(SourceName, "source");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(TenantName::new("acme-corp_2").is_ok());
        assert_eq!(
            TenantName::new(""),
            Err(NameError::Empty { what: "tenant" })
        );
        assert!(matches!(
            TenantName::new("Acme"),
            Err(NameError::BadCharacter { .. })
        ));
        assert!(matches!(
            SourceName::new("-x"),
            Err(NameError::BadCharacter { .. })
        ));
        assert!(matches!(
            SourceName::new("a".repeat(41)),
            Err(NameError::TooLong { .. })
        ));
    }
}
