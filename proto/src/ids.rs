//! Site and link identifiers. They are newtypes so that a link id can never be passed where a
//! site id is expected, and they are validated once, at the edge (inventory load, hello), so
//! that every later stage can use them as metric labels and database keys without escaping.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What is wrong with a candidate identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("identifier is empty")]
    Empty,
    #[error("identifier is {0} characters long, at most 64 are allowed")]
    TooLong(usize),
    #[error("identifier contains {0:?}; use only letters, digits, '-', '_' and '.' (e.g. S00042)")]
    BadChar(char),
}

fn check(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > 64 {
        return Err(IdError::TooLong(s.len()));
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        Some(c) => Err(IdError::BadChar(c)),
        None => Ok(()),
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an identifier.
            ///
            /// # Errors
            /// [`IdError`] when the string is empty, longer than 64 bytes or holds a character
            /// outside `[A-Za-z0-9._-]`.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check(&s)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
    };
}

id_type!(
    /// Identifier of a site (one RIE access point: a prefecture, a tax office, a court...).
    SiteId
);
id_type!(
    /// Identifier of an access link of a site (primary or backup).
    LinkId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_inventory_style_ids() {
        assert_eq!(SiteId::new("S00042").unwrap().as_str(), "S00042");
        assert_eq!(LinkId::new("S00042-P").unwrap().to_string(), "S00042-P");
    }

    #[test]
    fn rejects_ids_that_would_break_labels_or_paths() {
        assert_eq!(SiteId::new(""), Err(IdError::Empty));
        assert_eq!(SiteId::new("a b"), Err(IdError::BadChar(' ')));
        assert_eq!(SiteId::new("x".repeat(65)), Err(IdError::TooLong(65)));
        assert!(serde_json::from_str::<SiteId>("\"../etc\"").is_err());
    }
}
