//! Synthetic national inventory, calibrated on public figures about the RIE (see
//! `shared/rie-facts.md` and `docs/inventory.md`): about 14,000 sites and 1,000,000 agents,
//! heavy-tailed site sizes, every département including overseas, a dozen ministries, access
//! technologies and prices that depend on size and territory, about a third of sites dual-homed.
//!
//! Deterministic: the same seed and site count give byte-identical files (ChaCha8, whose output
//! is fixed by its specification, not by the `rand` version).
//!
//! Fewer sites than the nation (the demo's 300, a lab) are a sample of the nation generated
//! with the same seed, stratified by size: the nation's sites ordered by agents, one taken from
//! the middle of each of `n` equal slices. A small inventory then has the nation's mix of
//! small and large sites, so its costs per agent are the nation's (a random draw of 300 sites
//! from the heavy-tailed size distribution came out 5 to 7 % dearer per agent).

use std::collections::BTreeMap;
use std::path::Path;

use rand::distributions::WeightedIndex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Normal};
use rie_proto::geo::{Departement, DEPARTEMENTS};
use rie_proto::{LinkRole, Technology};

use super::{LINKS_HEADER, SITES_HEADER};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub sites: usize,
    pub seed: u64,
    /// Agents in all; the RIE serves about one million.
    pub agents_per_14000_sites: u64,
}

impl GenerateOptions {
    pub fn new(sites: usize, seed: u64) -> Self {
        Self {
            sites,
            seed,
            agents_per_14000_sites: 1_000_000,
        }
    }
}

/// Figures of what was written, printed by the CLI so the user can judge realism at a glance.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateSummary {
    pub sites: usize,
    pub agents: u64,
    pub links: usize,
    pub dual_homed: usize,
    pub overseas_sites: usize,
    pub departements: usize,
    pub ministries: usize,
    pub links_by_technology: BTreeMap<&'static str, usize>,
    /// Sum of all monthly link prices × 12, cents.
    pub annual_link_cost_cents: i64,
    pub largest_site_agents: u32,
    pub median_site_agents: u32,
}

/// Ministries: (name, share of sites in ‰, typical service name used in site names).
const MINISTRIES: &[(&str, u32, &str)] = &[
    ("Économie et Finances", 240, "Centre des finances publiques"),
    ("Intérieur", 170, "Préfecture"),
    ("Justice", 120, "Tribunal judiciaire"),
    (
        "Transition écologique",
        80,
        "Direction départementale des territoires",
    ),
    (
        "Travail et Solidarités",
        70,
        "Direction de l'emploi et des solidarités",
    ),
    ("Agriculture", 60, "Service de l'alimentation"),
    (
        "Éducation nationale",
        60,
        "Services départementaux de l'éducation",
    ),
    ("Armées", 50, "Service du commissariat des armées"),
    ("Culture", 40, "Direction des affaires culturelles"),
    (
        "Enseignement supérieur et Recherche",
        40,
        "Délégation régionale",
    ),
    ("Services du Premier ministre", 30, "Secrétariat général"),
    ("Outre-mer", 20, "Délégation"),
    (
        "Europe et Affaires étrangères",
        20,
        "Archives diplomatiques",
    ),
];

const MAINLAND_OPERATORS: &[&str] = &[
    "Orange",
    "SFR",
    "Bouygues Telecom",
    "Free Pro",
    "Kosc",
    "Axione",
    "Altitude Infra",
];
const OVERSEAS_OPERATORS: &[&str] = &[
    "Orange Caraïbe",
    "SFR Réunion",
    "Digicel",
    "Canal+ Télécom",
    "OPT",
];
const SATELLITE_OPERATORS: &[&str] = &["Nordnet", "Orange Satellite"];

/// Writes `sites.csv` and `links.csv` into `out`.
///
/// # Errors
/// I/O errors creating the directory or writing the files.
pub fn generate(opts: &GenerateOptions, out: &Path) -> std::io::Result<GenerateSummary> {
    let plan = plan(opts);
    std::fs::create_dir_all(out)?;
    let mut sites = csv::Writer::from_path(out.join("sites.csv"))?;
    sites.write_record(SITES_HEADER)?;
    for s in &plan.sites {
        sites.write_record([
            s.id.as_str(),
            s.name.as_str(),
            s.ministry,
            s.dep.code,
            &s.agents.to_string(),
            &format!("{:.4}", s.lat),
            &format!("{:.4}", s.lon),
            &format!("probe-{}", s.id),
            &s.exporter,
            &s.prefixes,
        ])?;
    }
    sites.flush()?;
    let mut links = csv::Writer::from_path(out.join("links.csv"))?;
    // The optional sflow_ifindex column is left out: generated routers send no sFlow.
    links.write_record(&LINKS_HEADER[..7])?;
    for l in &plan.links {
        links.write_record([
            l.id.as_str(),
            l.site.as_str(),
            l.role.as_str(),
            l.operator,
            l.tech.as_str(),
            &fmt_bandwidth(l.mbps),
            &format!("{}.{:02}", l.cents / 100, l.cents % 100),
        ])?;
    }
    links.flush()?;
    Ok(plan.summary())
}

fn fmt_bandwidth(mbps: f64) -> String {
    if mbps.fract() == 0.0 {
        format!("{mbps:.0}")
    } else {
        format!("{mbps}")
    }
}

struct PlannedSite {
    id: String,
    name: String,
    ministry: &'static str,
    dep: &'static Departement,
    agents: u32,
    lat: f64,
    lon: f64,
    exporter: String,
    /// `site_prefixes`: the site's IPv4 and IPv6 ranges.
    prefixes: String,
}

struct PlannedLink {
    id: String,
    site: String,
    role: LinkRole,
    operator: &'static str,
    tech: Technology,
    mbps: f64,
    cents: i64,
}

struct Plan {
    sites: Vec<PlannedSite>,
    links: Vec<PlannedLink>,
}

impl Plan {
    fn summary(&self) -> GenerateSummary {
        let mut by_tech = BTreeMap::new();
        for l in &self.links {
            *by_tech.entry(l.tech.as_str()).or_insert(0) += 1;
        }
        let mut sizes: Vec<u32> = self.sites.iter().map(|s| s.agents).collect();
        sizes.sort_unstable();
        let deps: std::collections::HashSet<_> = self.sites.iter().map(|s| s.dep.code).collect();
        let mins: std::collections::HashSet<_> = self.sites.iter().map(|s| s.ministry).collect();
        GenerateSummary {
            sites: self.sites.len(),
            agents: self.sites.iter().map(|s| u64::from(s.agents)).sum(),
            links: self.links.len(),
            dual_homed: self
                .links
                .iter()
                .filter(|l| l.role == LinkRole::Backup)
                .count(),
            overseas_sites: self.sites.iter().filter(|s| s.dep.overseas).count(),
            departements: deps.len(),
            ministries: mins.len(),
            links_by_technology: by_tech,
            annual_link_cost_cents: self.links.iter().map(|l| l.cents * 12).sum(),
            largest_site_agents: sizes.last().copied().unwrap_or(0),
            median_site_agents: sizes.get(sizes.len() / 2).copied().unwrap_or(0),
        }
    }
}

/// The nation's number of sites; a smaller inventory is a sample of it.
pub const NATIONAL_SITES: usize = 14_000;

fn plan(opts: &GenerateOptions) -> Plan {
    if opts.sites >= NATIONAL_SITES || opts.sites == 0 {
        return plan_all(opts);
    }
    let nation = plan_all(&GenerateOptions {
        sites: NATIONAL_SITES,
        ..opts.clone()
    });
    sample(nation, opts.sites)
}

/// `n` sites of `nation` stratified by size (see the module comment), renumbered `S00001`…
/// in their national order, with their links.
fn sample(nation: Plan, n: usize) -> Plan {
    let total = nation.sites.len();
    let mut by_size: Vec<usize> = (0..total).collect();
    by_size.sort_by_key(|&i| (nation.sites[i].agents, i));
    let mut picked: Vec<usize> = (0..n)
        .map(|k| by_size[(2 * k + 1) * total / (2 * n)])
        .collect();
    picked.sort_unstable();
    let mut new_id: BTreeMap<String, String> = BTreeMap::new();
    let mut sites = Vec::with_capacity(n);
    let mut keep = vec![false; total];
    for i in picked {
        keep[i] = true;
    }
    for (i, mut s) in nation.sites.into_iter().enumerate() {
        if !keep[i] {
            continue;
        }
        let k = sites.len();
        let id = format!("S{:05}", k + 1);
        new_id.insert(std::mem::replace(&mut s.id, id.clone()), id);
        s.exporter = exporter(k);
        s.prefixes = prefixes(k);
        sites.push(s);
    }
    let links = nation
        .links
        .into_iter()
        .filter_map(|mut l| {
            let id = new_id.get(&l.site)?;
            l.id = format!(
                "{id}-{}",
                if l.role == LinkRole::Backup { "B" } else { "P" }
            );
            l.site = id.clone();
            Some(l)
        })
        .collect();
    Plan { sites, links }
}

/// 10.a.b.1: unique up to 65,536 sites, one exporter per router.
fn exporter(i: usize) -> String {
    format!("10.{}.{}.1", (i >> 8) & 0xff, i & 0xff)
}

/// The router's LAN: 10.a.b.0/24 around its address, and a /48 of the RIE's ULA range
/// fd52:4945::/32 ("RIE" in hex): one per site, none overlapping.
fn prefixes(i: usize) -> String {
    format!(
        "10.{}.{}.0/24;fd52:4945:{:x}::/48",
        (i >> 8) & 0xff,
        i & 0xff,
        i & 0xffff
    )
}

/// `opts.sites` sites drawn from the national distributions.
fn plan_all(opts: &GenerateOptions) -> Plan {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let n = opts.sites;
    // Sites follow population, flattened (every département has its préfecture and services,
    // whatever its size): weight = population^0.6.
    let dep_weights: Vec<f64> = DEPARTEMENTS
        .iter()
        .map(|d| f64::from(d.population_k.max(5)).powf(0.6))
        .collect();
    let dep_dist = WeightedIndex::new(&dep_weights).expect("static positive weights");
    let min_dist =
        WeightedIndex::new(MINISTRIES.iter().map(|m| m.1)).expect("static positive weights");
    // Heavy tail: log-normal with median 22 agents; a few central administrations on top.
    let size_dist = LogNormal::new(22f64.ln(), 1.15).expect("valid parameters");
    let jitter = Normal::new(0.0, 0.12).expect("valid parameters");

    let mut raw: Vec<f64> = Vec::with_capacity(n);
    let mut sites = Vec::with_capacity(n);
    let central = (n / 200).max(usize::from(n >= 20));
    let paris = rie_proto::geo::departement("75").expect("Paris is in the table");
    let mut serial: BTreeMap<(&str, &str), u32> = BTreeMap::new();
    for i in 0..n {
        let (dep, ministry_idx, agents) = if i < central {
            // Central administrations: every ministry has some, in Paris, thousands of agents.
            (paris, i % MINISTRIES.len(), rng.gen_range(800.0..6000.0))
        } else {
            let dep = &DEPARTEMENTS[dep_dist.sample(&mut rng)];
            let mut m = min_dist.sample(&mut rng);
            // Outre-mer services sit overseas.
            if MINISTRIES[m].0 == "Outre-mer" && !dep.overseas {
                m = min_dist.sample(&mut rng);
            }
            (dep, m, size_dist.sample(&mut rng).clamp(2.0, 3000.0))
        };
        raw.push(agents);
        let (ministry, _, service) = MINISTRIES[ministry_idx];
        let k = serial.entry((service, dep.code)).or_insert(0);
        *k += 1;
        let name = if i < central {
            format!(
                "{ministry} – administration centrale n°{}",
                i / MINISTRIES.len() + 1
            )
        } else {
            format!("{service} – {} n°{k}", dep.name)
        };
        sites.push(PlannedSite {
            id: format!("S{:05}", i + 1),
            name,
            ministry,
            dep,
            agents: 0,
            lat: dep.lat + jitter.sample(&mut rng),
            lon: dep.lon + jitter.sample(&mut rng),
            exporter: exporter(i),
            prefixes: prefixes(i),
        });
    }
    // Scale to the national total, keeping the shape.
    let target = opts.agents_per_14000_sites as f64 * n as f64 / 14_000.0;
    let scale = target / raw.iter().sum::<f64>().max(1.0);
    for (s, a) in sites.iter_mut().zip(&raw) {
        s.agents = ((a * scale).round() as u32).max(2);
    }

    let mut links = Vec::with_capacity(n * 4 / 3);
    for s in &sites {
        let (tech, mbps, cents, operator) = primary_access(&mut rng, s);
        links.push(PlannedLink {
            id: format!("{}-P", s.id),
            site: s.id.clone(),
            role: LinkRole::Primary,
            operator,
            tech,
            mbps,
            cents,
        });
        let backup_p = match s.agents {
            a if a >= 300 => 0.95,
            a if a >= 80 => 0.70,
            a if a >= 25 => 0.35,
            _ => 0.15,
        };
        if rng.gen_bool(backup_p) {
            let (tech, mbps, cents, operator) = backup_access(&mut rng, s, tech, operator);
            links.push(PlannedLink {
                id: format!("{}-B", s.id),
                site: s.id.clone(),
                role: LinkRole::Backup,
                operator,
                tech,
                mbps,
                cents,
            });
        }
    }
    Plan { sites, links }
}

/// Price in cents around `base` euros (±15 %), rounded to the euro-cent.
fn price(rng: &mut ChaCha8Rng, base: f64) -> i64 {
    (base * rng.gen_range(0.85..1.15) * 100.0).round() as i64
}

fn pick<'a>(rng: &mut ChaCha8Rng, from: &[&'a str]) -> &'a str {
    from[rng.gen_range(0..from.len())]
}

fn primary_access(rng: &mut ChaCha8Rng, s: &PlannedSite) -> (Technology, f64, i64, &'static str) {
    let r: f64 = rng.gen();
    if s.dep.overseas {
        let op = pick(rng, OVERSEAS_OPERATORS);
        return match (s.agents, r) {
            (a, _) if a >= 150 => (Technology::Fibre, 100.0, price(rng, 1_400.0), op),
            (_, r) if r < 0.45 => (Technology::Xdsl, 4.0, price(rng, 190.0), op),
            (_, r) if r < 0.75 => (
                Technology::Satellite,
                4.0,
                price(rng, 690.0),
                pick(rng, SATELLITE_OPERATORS),
            ),
            _ => (Technology::FourG, 20.0, price(rng, 130.0), op),
        };
    }
    let op = pick(rng, MAINLAND_OPERATORS);
    match (s.agents, r) {
        (a, _) if a >= 1_000 => (Technology::Fibre, 1_000.0, price(rng, 1_600.0), op),
        (a, _) if a >= 300 => (Technology::Fibre, 500.0, price(rng, 1_050.0), op),
        (a, r) if a >= 80 && r < 0.9 => (Technology::Fibre, 200.0, price(rng, 620.0), op),
        (a, r) if a >= 25 && r < 0.7 => (Technology::Fibre, 100.0, price(rng, 430.0), op),
        (_, r) if r < 0.45 => (Technology::Fibre, 100.0, price(rng, 390.0), op),
        (_, r) if r < 0.88 => (Technology::Xdsl, 20.0, price(rng, 110.0), op),
        (_, r) if r < 0.97 => (Technology::FourG, 50.0, price(rng, 75.0), op),
        (_, r) if r < 0.995 => (Technology::FiveG, 300.0, price(rng, 95.0), op),
        _ => (
            Technology::Satellite,
            10.0,
            price(rng, 450.0),
            pick(rng, SATELLITE_OPERATORS),
        ),
    }
}

/// A backup from another operator, and where it matters another technology.
fn backup_access(
    rng: &mut ChaCha8Rng,
    s: &PlannedSite,
    primary: Technology,
    primary_op: &str,
) -> (Technology, f64, i64, &'static str) {
    let pool = if s.dep.overseas {
        OVERSEAS_OPERATORS
    } else {
        MAINLAND_OPERATORS
    };
    let others: Vec<&'static str> = pool.iter().copied().filter(|o| *o != primary_op).collect();
    let op = others[rng.gen_range(0..others.len())];
    if s.agents >= 300 && primary == Technology::Fibre && !s.dep.overseas {
        // Large sites: a second fibre, on another operator's path.
        return (Technology::Fibre, 200.0, price(rng, 700.0), op);
    }
    if rng.gen_bool(0.8) {
        (Technology::FourG, 50.0, price(rng, 65.0), op)
    } else if primary != Technology::Xdsl && !s.dep.overseas {
        (Technology::Xdsl, 20.0, price(rng, 100.0), op)
    } else {
        (Technology::FiveG, 300.0, price(rng, 90.0), op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_inventory_is_a_size_stratified_sample_of_the_nation() {
        let opts = GenerateOptions::new(300, 1);
        let nation = plan(&GenerateOptions::new(NATIONAL_SITES, 1));
        let sample = plan(&opts);
        assert_eq!(sample.sites.len(), 300);
        for (k, s) in sample.sites.iter().enumerate() {
            assert_eq!(s.id, format!("S{:05}", k + 1));
            assert_eq!(s.exporter, exporter(k));
        }
        let ids: std::collections::BTreeSet<&str> =
            sample.sites.iter().map(|s| s.id.as_str()).collect();
        assert!(sample.links.iter().all(|l| ids.contains(l.site.as_str())));
        assert!(sample.links.iter().all(|l| l.id.starts_with(&l.site)));
        // One site from the middle of each of 300 slices of the nation ordered by size: the
        // k-th smallest of the sample is the nation's (2k+1)·14,000/600-th smallest.
        let sizes = |p: &Plan| {
            let mut v: Vec<u32> = p.sites.iter().map(|s| s.agents).collect();
            v.sort_unstable();
            v
        };
        let (all, some) = (sizes(&nation), sizes(&sample));
        for (k, a) in some.iter().enumerate() {
            assert_eq!(*a, all[(2 * k + 1) * NATIONAL_SITES / 600], "{k}");
        }
        // Each site keeps its national links (names are unique nationally).
        let links_by_name = |p: &Plan| -> BTreeMap<String, Vec<(String, i64)>> {
            let name: BTreeMap<&str, &str> = p
                .sites
                .iter()
                .map(|s| (s.id.as_str(), s.name.as_str()))
                .collect();
            let mut m: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
            for l in &p.links {
                m.entry(name[l.site.as_str()].to_string())
                    .or_default()
                    .push((l.role.as_str().to_string(), l.cents));
            }
            m
        };
        let national = links_by_name(&nation);
        let sampled = links_by_name(&sample);
        assert_eq!(sampled.len(), 300);
        for (name, links) in &sampled {
            assert_eq!(Some(links), national.get(name), "{name}");
        }
    }

    #[test]
    fn national_inventory_is_plausible_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let sum = generate(&GenerateOptions::new(14_000, 7), dir.path()).unwrap();
        assert_eq!(sum.sites, 14_000);
        assert!((950_000..=1_050_000).contains(&sum.agents), "{sum:?}");
        assert_eq!(
            sum.departements,
            DEPARTEMENTS.len(),
            "every département and collectivity"
        );
        assert!((10..=15).contains(&sum.ministries));
        let dual = sum.dual_homed as f64 / sum.sites as f64;
        assert!((0.28..=0.40).contains(&dual), "dual-homed share {dual}");
        assert!((5..=50).contains(&sum.median_site_agents), "{sum:?}");
        assert!(sum.largest_site_agents >= 2_000, "{sum:?}");
        for t in Technology::ALL {
            assert!(
                sum.links_by_technology
                    .get(t.as_str())
                    .copied()
                    .unwrap_or(0)
                    > 0,
                "{t:?}"
            );
        }
        let inv = super::super::load_dir(dir.path()).unwrap();
        assert_eq!(inv.total_agents(), sum.agents);
        // Every site has one IPv4 and one IPv6 prefix, its exporter inside the IPv4 one, and no
        // two sites share an address (sorted ranges never overlap).
        let mut v4: Vec<ipnet::IpNet> = Vec::new();
        for s in &inv.sites {
            assert_eq!(s.prefixes.len(), 2, "{}", s.id);
            assert!(s.prefixes[0].contains(&s.exporters[0]), "{}", s.id);
            v4.push(s.prefixes[0]);
        }
        v4.sort();
        for w in v4.windows(2) {
            assert!(
                !w[0].contains(&w[1].network()),
                "{} overlaps {}",
                w[0],
                w[1]
            );
        }
        let v6: std::collections::HashSet<_> = inv.sites.iter().map(|s| s.prefixes[1]).collect();
        assert_eq!(v6.len(), inv.sites.len());
        assert_eq!(inv.dual_homed_sites(), sum.dual_homed);
        let cents: i64 = inv.links.iter().map(|l| l.monthly_cost_cents * 12).sum();
        assert_eq!(cents, sum.annual_link_cost_cents);
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let read = |seed| {
            let dir = tempfile::tempdir().unwrap();
            generate(&GenerateOptions::new(300, seed), dir.path()).unwrap();
            (
                std::fs::read(dir.path().join("sites.csv")).unwrap(),
                std::fs::read(dir.path().join("links.csv")).unwrap(),
            )
        };
        assert_eq!(read(1), read(1));
        assert_ne!(read(1), read(2));
    }
}
