//! The national inventory: sites and their access links, loaded from two CSV files
//! (`sites.csv`, `links.csv`). Everything downstream (authentication, site states, metric
//! labels, indicators) keys on it, so it is validated whole at start-up and every error names
//! the file, line, column and the fix.
//!
//! Owns: the sites and links CSV (`load`) and the synthetic national inventory (`generate`).
//! Imports no other module of the crate: it is the floor everything stands on.

mod generate;
mod load;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

pub use generate::{generate, GenerateOptions, GenerateSummary};
pub use load::{load_dir, LINKS_HEADER, SITES_HEADER};
use rie_proto::{LinkId, LinkRole, SiteId, Technology};

/// One RIE site (an office with a router).
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub id: SiteId,
    pub name: String,
    pub ministry: String,
    /// INSEE département code, e.g. "35", "2A", "974", "988".
    pub departement: String,
    pub agents: u32,
    pub latitude: f64,
    pub longitude: f64,
    /// Key of the probe credential (token hash) this site's probe must present.
    pub credential_ref: String,
    /// Addresses from which the site's router exports NetFlow/IPFIX, and sFlow (the agent
    /// address of its datagrams, else their source).
    pub exporters: Vec<IpAddr>,
    /// The site's own address ranges (IPv4 and IPv6, canonical, none overlapping another of
    /// the same site): the collector decides the direction of NetFlow exported straight to it
    /// against them. Empty: direction `unknown`.
    pub prefixes: Vec<ipnet::IpNet>,
}

/// One access link of a site.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub id: LinkId,
    pub site: SiteId,
    pub role: LinkRole,
    pub operator: String,
    pub technology: Technology,
    /// Contracted bandwidth, Mbit/s (downstream).
    pub bandwidth_mbps: f64,
    /// Monthly price in euro cents: integer so that sums are exact to the cent.
    pub monthly_cost_cents: i64,
}

/// An error in an inventory file, with its position.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", fmt_invalid(file, *line, column, message))]
    Invalid {
        file: PathBuf,
        /// 1-based line number in the file.
        line: u64,
        /// 1-based column number and its header name, when one column is at fault.
        column: Option<(usize, &'static str)>,
        message: String,
    },
}

fn fmt_invalid(
    file: &std::path::Path,
    line: u64,
    column: &Option<(usize, &'static str)>,
    message: &str,
) -> String {
    match column {
        Some((n, name)) => format!(
            "{}: line {line}, column {n} ({name}): {message}",
            file.display()
        ),
        None => format!("{}: line {line}: {message}", file.display()),
    }
}

/// Sites and links, indexed.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub sites: Vec<Site>,
    pub links: Vec<Link>,
    site_index: HashMap<SiteId, usize>,
    links_of: HashMap<SiteId, Vec<usize>>,
    exporter_site: HashMap<IpAddr, usize>,
    /// (site index, sFlow ifIndex) → link index (`links.csv` `sflow_ifindex`).
    sflow_links: HashMap<(usize, u32), usize>,
}

impl Inventory {
    /// Builds the indexes. Callers go through [`load_dir`], which validates first.
    pub(crate) fn index(sites: Vec<Site>, links: Vec<Link>) -> Self {
        let site_index = sites
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect();
        let mut links_of: HashMap<SiteId, Vec<usize>> = HashMap::new();
        for (i, l) in links.iter().enumerate() {
            links_of.entry(l.site.clone()).or_default().push(i);
        }
        let exporter_site = sites
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.exporters.iter().map(move |a| (*a, i)))
            .collect();
        Self {
            sites,
            links,
            site_index,
            links_of,
            exporter_site,
            sflow_links: HashMap::new(),
        }
    }

    /// Records the `sflow_ifindex` of each link, in the order of [`Inventory::links`].
    pub(crate) fn index_sflow_ifindexes(&mut self, ifindexes: impl Iterator<Item = Option<u32>>) {
        for (i, ifindex) in ifindexes.enumerate() {
            let (Some(ifindex), Some(link)) = (ifindex, self.links.get(i)) else {
                continue;
            };
            if let Some(&site) = self.site_index.get(&link.site) {
                self.sflow_links.insert((site, ifindex), i);
            }
        }
    }

    /// The link of a site whose router interface has this ifIndex (sFlow counter samples).
    pub fn link_of_ifindex(&self, site_idx: usize, ifindex: u32) -> Option<&Link> {
        self.sflow_links
            .get(&(site_idx, ifindex))
            .map(|&i| &self.links[i])
    }

    pub fn site(&self, id: &SiteId) -> Option<&Site> {
        self.site_index.get(id).map(|&i| &self.sites[i])
    }

    /// Position of a site in [`Inventory::sites`], stable for the life of this inventory.
    pub fn site_index(&self, id: &SiteId) -> Option<usize> {
        self.site_index.get(id).copied()
    }

    pub fn links_of(&self, site: &SiteId) -> impl Iterator<Item = &Link> {
        self.links_of
            .get(site)
            .into_iter()
            .flatten()
            .map(|&i| &self.links[i])
    }

    /// Position in [`Inventory::sites`] of the site whose router exports from this address.
    pub fn site_index_of_exporter(&self, addr: &IpAddr) -> Option<usize> {
        self.exporter_site.get(addr).copied()
    }

    /// The site whose router exports from this address.
    pub fn site_of_exporter(&self, addr: &IpAddr) -> Option<&Site> {
        self.exporter_site.get(addr).map(|&i| &self.sites[i])
    }

    pub fn total_agents(&self) -> u64 {
        self.sites.iter().map(|s| u64::from(s.agents)).sum()
    }

    /// Share of sites that have at least one backup link.
    pub fn dual_homed_sites(&self) -> usize {
        self.sites
            .iter()
            .filter(|s| self.links_of(&s.id).any(|l| l.role == LinkRole::Backup))
            .count()
    }
}

/// The generator numbers exporters up to 65,536: `--sites` of `inventory generate` and of the
/// simulator stays within 1 to 60,000.
///
/// # Errors
/// The message to show for a count out of range.
pub fn check_generated_sites(sites: usize) -> Result<(), String> {
    if (1..=60_000).contains(&sites) {
        Ok(())
    } else {
        Err(format!("--sites {sites}: choose 1 to 60000"))
    }
}
