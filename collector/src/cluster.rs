//! Scale-out across collectors: which member owns which site.
//!
//! Each collector of a cluster is configured with the same ordered list of members (the
//! addresses probes dial) and its own address among them. A site belongs to the member with
//! the highest rendezvous weight `SHA-256(member, site)`: every collector computes the same
//! owner without talking to the others, and adding a member moves only the sites the new member
//! wins (about 1/n of them), never a site between two old members. A hello for a site owned by
//! another member is answered with a redirect (see `ingest::probe_stream`).
//!
//! Owns `ClusterConfig` (`[cluster]`), the rendezvous ring and `owner_index`. Imports no other
//! module of the crate; its HTTP routes are `api::cluster`.

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// `[cluster]` section: absent or with no members means a single collector owning every site.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Probe-facing `host:port` of every collector of the cluster, identical on all of them.
    #[serde(default)]
    pub members: Vec<String>,
    /// This collector's own entry in `members`.
    #[serde(default, rename = "self")]
    pub self_address: Option<String>,
    /// Base URL of every member's HTTP API (`http://host:port`), this one included, for the
    /// national answers of `/api/v1/cluster/...`; empty: that endpoint answers 404.
    #[serde(default)]
    pub api_members: Vec<String>,
    /// How long a hello of a stream this member has no current mark for waits for the other
    /// members' marks (`stream_marks`) before it is answered anyway. Probes wait 10 s for the
    /// answer (their `connect_timeout`), so this stays well below it (at most 5 s).
    #[serde(default = "default_mark_lookup_timeout", with = "humantime_serde")]
    pub mark_lookup_timeout: std::time::Duration,
}

fn default_mark_lookup_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(2)
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            members: Vec::new(),
            self_address: None,
            api_members: Vec::new(),
            mark_lookup_timeout: default_mark_lookup_timeout(),
        }
    }
}

/// Why a `[cluster]` section cannot work; `key` is the configuration key to fix.
#[derive(Debug, thiserror::Error)]
#[error("key `{key}`: {message}")]
pub struct ClusterConfigError {
    pub key: &'static str,
    pub message: String,
}

impl ClusterConfig {
    /// # Errors
    /// [`ClusterConfigError`] naming the key: a member that is not `host:port`, a duplicate
    /// member, or `self` missing or not among the members.
    pub fn validate(&self) -> Result<(), ClusterConfigError> {
        if self.members.is_empty() {
            return match &self.self_address {
                Some(_) => Err(ClusterConfigError {
                    key: "cluster.members",
                    message: "is empty while cluster.self is set; list every collector, e.g. [\"collector-a.rie.gouv.fr:7443\", \"collector-b.rie.gouv.fr:7443\"]".into(),
                }),
                None => Ok(()),
            };
        }
        for (i, m) in self.members.iter().enumerate() {
            if rie_common::split_host_port(m).is_none() {
                return Err(ClusterConfigError {
                    key: "cluster.members",
                    message: format!(
                        "{m:?} is not host:port; e.g. \"collector-a.rie.gouv.fr:7443\""
                    ),
                });
            }
            if self.members[..i].contains(m) {
                return Err(ClusterConfigError {
                    key: "cluster.members",
                    message: format!("{m:?} is listed twice"),
                });
            }
        }
        for u in &self.api_members {
            if !(u.starts_with("http://") || u.starts_with("https://"))
                || reqwest::Url::parse(u).is_err()
            {
                return Err(ClusterConfigError {
                    key: "cluster.api_members",
                    message: format!(
                        "{u:?} is not a URL; e.g. \"http://collector-a.rie.gouv.fr:8080\""
                    ),
                });
            }
        }
        if self.mark_lookup_timeout.is_zero()
            || self.mark_lookup_timeout > std::time::Duration::from_secs(5)
        {
            return Err(ClusterConfigError {
                key: "cluster.mark_lookup_timeout",
                message: format!(
                    "{:?} is outside 1ms..=5s (probes wait 10 s for the hello answer); e.g. \"2s\"",
                    self.mark_lookup_timeout
                ),
            });
        }
        if !self.api_members.is_empty() && self.api_members.len() != self.members.len() {
            return Err(ClusterConfigError {
                key: "cluster.api_members",
                message: format!(
                    "lists {} APIs for {} members; give one API URL per member of cluster.members",
                    self.api_members.len(),
                    self.members.len()
                ),
            });
        }
        match &self.self_address {
            None => Err(ClusterConfigError {
                key: "cluster.self",
                message: "is missing; set it to this collector's own entry of cluster.members"
                    .into(),
            }),
            Some(s) if !self.members.contains(s) => Err(ClusterConfigError {
                key: "cluster.self",
                message: format!("{s:?} is not one of cluster.members {:?}", self.members),
            }),
            Some(_) => Ok(()),
        }
    }

    /// API URLs of the other members (every `api_members` entry but this one's, which has the
    /// same index as `self` in `members`): the peers asked for stream marks.
    pub fn peer_apis(&self) -> Vec<String> {
        let me = self
            .self_address
            .as_ref()
            .and_then(|s| self.members.iter().position(|m| m == s));
        self.api_members
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != me)
            .map(|(_, u)| u.clone())
            .collect()
    }

    /// The ring this collector routes with, or `None` for a single collector.
    pub fn ring(&self) -> Option<Ring> {
        let me = self.self_address.clone()?;
        if self.members.is_empty() {
            return None;
        }
        Some(Ring {
            members: self.members.clone(),
            me,
        })
    }
}

/// Rendezvous weight of `site` on `member`: the first 8 bytes of SHA-256 over both, with a
/// separator so that ("ab","c") and ("a","bc") differ. SHA-256 because it is stable across
/// versions and platforms (the std hasher is not), and a hello pays for it only once per member.
pub fn weight(member: &str, site: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(member.as_bytes());
    h.update([0u8]);
    h.update(site.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// Owner of `site` among `members` (highest weight; ties, vanishingly rare, to the first listed).
pub fn owner<'a>(members: &'a [String], site: &str) -> Option<&'a str> {
    let mut best: Option<(&str, u64)> = None;
    for m in members {
        let w = weight(m, site);
        if best.is_none_or(|(_, bw)| w > bw) {
            best = Some((m, w));
        }
    }
    best.map(|(m, _)| m)
}

/// This collector's view of the cluster.
#[derive(Debug, Clone)]
pub struct Ring {
    pub members: Vec<String>,
    pub me: String,
}

impl Ring {
    /// `None` when this collector owns `site`, else the member that does.
    pub fn redirect_for(&self, site: &str) -> Option<&str> {
        owner(&self.members, site).filter(|o| *o != self.me)
    }
}

/// For each inventory site, the index of its owner in `members`.
pub fn owner_index<'a>(members: &[String], sites: impl Iterator<Item = &'a str>) -> Vec<usize> {
    sites
        .map(|s| {
            owner(members, s)
                .and_then(|o| members.iter().position(|m| m == o))
                .unwrap_or(0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("S{i:05}")).collect()
    }

    fn m(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn adding_a_third_member_moves_a_third_of_the_sites_and_only_to_it() {
        let two = m(&["collector-a.example:7443", "collector-b.example:7443"]);
        let mut three = two.clone();
        three.push("collector-c.example:7443".into());
        let all = sites(14_000);
        let mut moved = 0;
        let mut per = [0usize; 3];
        for s in &all {
            let before = owner(&two, s).unwrap();
            let after = owner(&three, s).unwrap();
            per[three.iter().position(|x| x == after).unwrap()] += 1;
            if before != after {
                moved += 1;
                assert_eq!(
                    after, "collector-c.example:7443",
                    "{s} moved between old members"
                );
            }
        }
        // Expected 14,000/3 = 4,667, binomial sd ≈ 56: ±5 % is more than 10 sd.
        assert!((4_433..=4_900).contains(&moved), "moved {moved}");
        assert_eq!(moved, per[2]);
        for p in per {
            assert!((4_433..=4_900).contains(&p), "{per:?}");
        }
    }

    #[test]
    fn owner_is_stable_and_independent_of_member_order() {
        let a = m(&["x:1", "y:2", "z:3"]);
        let b = m(&["z:3", "x:1", "y:2"]);
        for s in sites(1_000) {
            assert_eq!(owner(&a, &s), owner(&b, &s));
        }
        // Pinned values: a change of the hash would silently move every site of a live cluster.
        assert_eq!(weight("x:1", "S00042"), weight("x:1", "S00042"));
        assert_ne!(weight("ab", "c"), weight("a", "bc"));
    }

    #[test]
    fn ring_redirects_only_sites_of_other_members() {
        let cfg = ClusterConfig {
            members: m(&["a:1", "b:2"]),
            self_address: Some("a:1".into()),
            api_members: vec![],
            ..Default::default()
        };
        cfg.validate().unwrap();
        let ring = cfg.ring().unwrap();
        for s in sites(200) {
            match owner(&cfg.members, &s).unwrap() {
                "a:1" => assert_eq!(ring.redirect_for(&s), None),
                other => assert_eq!(ring.redirect_for(&s), Some(other)),
            }
        }
    }

    #[test]
    fn validation_names_the_key() {
        let bad = |members: &[&str], me: Option<&str>| {
            ClusterConfig {
                members: m(members),
                self_address: me.map(str::to_string),
                api_members: vec![],
                ..Default::default()
            }
            .validate()
            .unwrap_err()
        };
        assert_eq!(bad(&["a:1"], Some("b:2")).key, "cluster.self");
        assert_eq!(bad(&["a:1"], None).key, "cluster.self");
        assert_eq!(bad(&["a"], Some("a")).key, "cluster.members");
        assert_eq!(bad(&["a:1", "a:1"], Some("a:1")).key, "cluster.members");
        assert_eq!(bad(&[], Some("a:1")).key, "cluster.members");
        let api = |urls: &[&str]| ClusterConfig {
            members: m(&["a:1", "b:2"]),
            self_address: Some("a:1".into()),
            api_members: m(urls),
            ..Default::default()
        };
        assert_eq!(
            api(&["http://a:8080"]).validate().unwrap_err().key,
            "cluster.api_members"
        );
        assert_eq!(
            api(&["a:8080", "b:8080"]).validate().unwrap_err().key,
            "cluster.api_members"
        );
        api(&["http://a:8080", "https://b:8443"])
            .validate()
            .unwrap();
        let mut slow = api(&["http://a:8080", "http://b:8080"]);
        slow.mark_lookup_timeout = std::time::Duration::from_secs(9);
        assert_eq!(
            slow.validate().unwrap_err().key,
            "cluster.mark_lookup_timeout"
        );
        // The peers of a member are the other members' APIs, matched by position.
        let mut b = api(&["http://a:8080", "http://b:8080"]);
        b.self_address = Some("b:2".into());
        assert_eq!(b.peer_apis(), vec!["http://a:8080".to_string()]);
        assert!(ClusterConfig::default().validate().is_ok());
        assert!(ClusterConfig::default().ring().is_none());
    }
}
