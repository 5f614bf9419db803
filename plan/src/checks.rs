//! What is checked and how often: the `[checks]` of a probe's file and each role of a plan use
//! these same types (moved here from the probe so that the collector validates a plan exactly
//! as the probe will read it).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rie_proto::{CheckKind, LinkId};
use serde::{Deserialize, Serialize};

/// What is checked, how often.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksConfig {
    /// One sample per target and link per interval.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Attempts per interval (pings, connects, queries, requests), spread over the interval.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// An attempt without an answer within this is lost.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
}

impl Default for ChecksConfig {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            attempts: default_attempts(),
            timeout: default_timeout(),
            targets: Vec::new(),
        }
    }
}

pub fn default_interval() -> Duration {
    Duration::from_secs(10)
}
pub fn default_attempts() -> u32 {
    5
}
pub fn default_timeout() -> Duration {
    Duration::from_secs(1)
}

impl ChecksConfig {
    /// Checks the timing values; `Err((key, message))` names the key under `[checks]` (or a
    /// plan role) and a right value.
    ///
    /// # Errors
    /// The first key at fault.
    pub fn validate_timing(&self) -> Result<(), (&'static str, String)> {
        if self.interval < Duration::from_secs(1) {
            return Err(("interval", "must be at least 1s; e.g. \"10s\"".into()));
        }
        if !(1..=100).contains(&self.attempts) {
            return Err(("attempts", "must be between 1 and 100; e.g. 5".into()));
        }
        if self.timeout.is_zero() || self.timeout * self.attempts > self.interval * 2 {
            return Err((
                "timeout",
                "must be above 0 and leave the attempts room in the interval; e.g. \"1s\" for 5 attempts every 10s".into(),
            ));
        }
        Ok(())
    }
}

/// One target.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub kind: CheckKind,
    /// icmp: an address; tcp: `address:port`; dns: the resolver, `address[:port]`;
    /// http: a URL `http://host[:port]/path` or `https://...`.
    pub target: String,
    /// Label in reports, e.g. "core-rennes"; defaults to `target`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// dns only: the name to resolve (an A record), e.g. "rie.gouv.fr".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Links to check this target over; empty: every link. (Not in a plan, which applies to
    /// every link of a role.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkId>,
}

/// A target ready to probe (validated at start-up or when a plan arrives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Icmp(IpAddr),
    Tcp(SocketAddr),
    Dns { resolver: SocketAddr, name: String },
    Http(Url),
}

impl TargetConfig {
    /// Parses the target for its kind; the message says what a right value looks like.
    ///
    /// # Errors
    /// A message for the config error.
    pub fn parse(&self) -> Result<Target, String> {
        let t = self.target.trim();
        match self.kind {
            CheckKind::Icmp => t
                .parse()
                .map(Target::Icmp)
                .map_err(|_| format!("{t:?} is not an IP address; e.g. \"10.255.0.1\"")),
            CheckKind::Tcp => t
                .parse()
                .map(Target::Tcp)
                .map_err(|_| format!("{t:?} is not address:port; e.g. \"10.255.0.1:443\"")),
            CheckKind::Dns => {
                let resolver = t
                    .parse::<SocketAddr>()
                    .or_else(|_| t.parse::<IpAddr>().map(|a| SocketAddr::new(a, 53)))
                    .map_err(|_| {
                        format!("{t:?} is not a resolver address; e.g. \"10.255.0.53\"")
                    })?;
                let name =
                    self.query.clone().filter(|q| valid_name(q)).ok_or(
                        "dns checks need `query`, a name to resolve; e.g. \"rie.gouv.fr\"",
                    )?;
                Ok(Target::Dns { resolver, name })
            }
            CheckKind::Http => Url::parse(t).map(Target::Http),
        }
    }

    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.target.clone())
    }
}

/// A DNS name a query can carry.
pub fn valid_name(name: &str) -> bool {
    let n = name.trim_end_matches('.');
    !n.is_empty() && n.len() <= 253 && n.split('.').all(|l| !l.is_empty() && l.len() <= 63)
}

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    /// # Errors
    /// A message for the config error.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an http(s) URL; e.g. \"https://portail.rie.gouv.fr/\"");
        let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad());
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h, p.parse().map_err(|_| bad())?)
            }
            _ => (authority, if tls { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            tls,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            path: path.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_per_kind_with_a_useful_error() {
        let t = |kind, target: &str, query: Option<&str>| TargetConfig {
            kind,
            target: target.into(),
            name: None,
            query: query.map(String::from),
            links: vec![],
        };
        assert!(matches!(
            t(CheckKind::Icmp, "10.255.0.1", None).parse(),
            Ok(Target::Icmp(_))
        ));
        assert!(t(CheckKind::Icmp, "core", None)
            .parse()
            .unwrap_err()
            .contains("e.g."));
        assert!(matches!(
            t(CheckKind::Dns, "10.0.0.53", Some("rie.gouv.fr")).parse(),
            Ok(Target::Dns { resolver, .. }) if resolver.port() == 53
        ));
        assert!(t(CheckKind::Dns, "10.0.0.53", None)
            .parse()
            .unwrap_err()
            .contains("query"));
        assert!(t(CheckKind::Tcp, "10.0.0.1", None).parse().is_err());
        assert!(matches!(
            t(CheckKind::Http, "http://10.0.0.1:8080/health", None).parse(),
            Ok(Target::Http(_))
        ));
        assert!(t(CheckKind::Http, "ftp://x", None).parse().is_err());
        assert!(valid_name("rie.gouv.fr"));
        assert!(!valid_name("a..b"));
        assert!(!valid_name(""));
    }

    #[test]
    fn urls_parse() {
        let u = Url::parse("https://portail.rie.gouv.fr/sante").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (true, 443, "/sante"));
        let u = Url::parse("http://10.0.0.1:8080").unwrap();
        assert_eq!((u.port, u.path.as_str()), (8080, "/"));
        let u = Url::parse("http://[fd00::1]:81/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("fd00::1", 81));
        assert!(Url::parse("http://:80/").is_err());
    }
}
