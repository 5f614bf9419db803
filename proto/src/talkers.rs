//! Top talkers: per minute, the remote prefixes (IPv4 /24, IPv6 /48) that exchanged the most
//! bytes with the site, as the probe's meter saw them. A probe sends only its top N per minute,
//! so their bytes are a subset of the flow totals; the rest is "other".

use serde::{Deserialize, Serialize};

/// One remote prefix's traffic with the site in one minute (both directions together).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopTalker {
    /// Start of the minute, Unix seconds, a multiple of 60.
    pub minute: i64,
    /// Remote prefix, e.g. `192.0.2.0/24` or `2001:db8:1::/48`.
    pub prefix: String,
    pub bytes: u64,
    pub packets: u64,
}
