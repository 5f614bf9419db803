//! Where a plan applies: the whole country, one ministry's sites, one département's sites,
//! or one site. A narrower scope overrides a wider one value by value, in this order:
//! national < ministry < département < site.

use std::fmt;

/// A plan's scope, written `national`, `ministry:NAME`, `departement:NN` or `site:ID`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    National,
    Ministry(String),
    Departement(String),
    Site(String),
}

impl Scope {
    /// # Errors
    /// A message with the accepted forms.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("{s:?} is not a scope; use national, ministry:NAME (as in sites.csv), departement:NN or site:ID")
        };
        if s == "national" {
            return Ok(Scope::National);
        }
        let (kind, value) = s.split_once(':').ok_or_else(bad)?;
        let value = value.trim();
        if value.is_empty() {
            return Err(bad());
        }
        Self::from_parts(kind, value).ok_or_else(bad)
    }

    /// From the stored `(kind, value)` columns.
    pub fn from_parts(kind: &str, value: &str) -> Option<Self> {
        match kind {
            "national" => Some(Scope::National),
            "ministry" => Some(Scope::Ministry(value.into())),
            "departement" => Some(Scope::Departement(value.into())),
            "site" => Some(Scope::Site(value.into())),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Scope::National => "national",
            Scope::Ministry(_) => "ministry",
            Scope::Departement(_) => "departement",
            Scope::Site(_) => "site",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            Scope::National => "",
            Scope::Ministry(v) | Scope::Departement(v) | Scope::Site(v) => v,
        }
    }

    /// 0 for national up to 3 for a site: a higher rank overrides a lower one.
    pub fn rank(&self) -> u8 {
        match self {
            Scope::National => 0,
            Scope::Ministry(_) => 1,
            Scope::Departement(_) => 2,
            Scope::Site(_) => 3,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::National => f.write_str("national"),
            other => write!(f, "{}:{}", other.kind(), other.value()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print_back() {
        for s in [
            "national",
            "ministry:Intérieur",
            "departement:2A",
            "site:S00042",
        ] {
            assert_eq!(Scope::parse(s).unwrap().to_string(), s);
        }
        assert!(Scope::parse("region:Bretagne")
            .unwrap_err()
            .contains("departement:NN"));
        assert!(Scope::parse("site:").is_err());
        assert!(Scope::National.rank() < Scope::Site("S1".into()).rank());
    }
}
