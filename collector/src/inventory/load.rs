//! CSV reading and validation of the inventory. Fields are parsed one by one (not through
//! serde) so that each error can name its column and say what a right value looks like.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rie_proto::{geo, LinkId, LinkRole, SiteId, Technology};

use super::{Inventory, InventoryError, Link, Site};

/// Columns of `sites.csv`, in order. The last one, `site_prefixes`, is optional: a file
/// written before it existed (9 columns) still loads, its sites without prefixes.
pub const SITES_HEADER: [&str; 10] = [
    "site_id",
    "name",
    "ministry",
    "departement",
    "agents",
    "latitude",
    "longitude",
    "credential_ref",
    "netflow_exporters",
    "site_prefixes",
];

/// Columns of `links.csv`, in order. The last one, `sflow_ifindex`, is optional: the ifIndex
/// of the router interface of that access, as its sFlow agent reports it (counter samples give
/// the link's utilisation and errors); empty when the router sends no sFlow.
pub const LINKS_HEADER: [&str; 8] = [
    "link_id",
    "site_id",
    "role",
    "operator",
    "technology",
    "bandwidth_mbps",
    "monthly_cost_eur",
    "sflow_ifindex",
];

/// Loads and validates `DIR/sites.csv` and `DIR/links.csv`.
///
/// # Errors
/// The first [`InventoryError`] found, naming file, line and column.
pub fn load_dir(dir: &Path) -> Result<Inventory, InventoryError> {
    let sites_path = dir.join("sites.csv");
    let links_path = dir.join("links.csv");
    let sites = read_table(&sites_path, &SITES_HEADER, 1, parse_site)?;
    let rows = read_table(&links_path, &LINKS_HEADER, 1, |row| {
        Ok((parse_link(row)?, parse_ifindex(row)?))
    })?;
    let mut ifindexes = Vec::with_capacity(rows.len());
    let mut links = Vec::with_capacity(rows.len());
    for (line, (link, ifindex)) in rows {
        ifindexes.push((line, ifindex));
        links.push((line, link));
    }
    cross_check(&sites_path, &links_path, &sites, &links)?;
    let mut seen: HashMap<(&SiteId, u32), u64> = HashMap::new();
    for ((line, ifindex), (_, l)) in ifindexes.iter().zip(&links) {
        if let Some(first) = ifindex.and_then(|i| seen.insert((&l.site, i), *line)) {
            return Err(InventoryError::Invalid {
                file: links_path.clone(),
                line: *line,
                column: Some((8, LINKS_HEADER[7])),
                message: format!(
                    "ifIndex {} is already the link on line {first} of site {}; each interface is one link",
                    ifindex.unwrap_or_default(),
                    l.site
                ),
            });
        }
    }
    let mut inv = Inventory::index(
        sites.into_iter().map(|(_, s)| s).collect(),
        links.into_iter().map(|(_, l)| l).collect(),
    );
    inv.index_sflow_ifindexes(ifindexes.into_iter().map(|(_, i)| i));
    Ok(inv)
}

/// One data row being parsed: knows where it is, so field errors carry their position.
struct Row<'a> {
    file: &'a Path,
    line: u64,
    header: &'static [&'static str],
    record: &'a csv::StringRecord,
}

impl Row<'_> {
    fn err(&self, col: usize, message: String) -> InventoryError {
        InventoryError::Invalid {
            file: self.file.to_path_buf(),
            line: self.line,
            column: Some((col + 1, self.header[col])),
            message,
        }
    }

    fn text(&self, col: usize) -> Result<&str, InventoryError> {
        let v = self.record.get(col).unwrap_or("").trim();
        if v.is_empty() {
            return Err(self.err(col, "is empty; every row needs a value here".into()));
        }
        Ok(v)
    }

    fn number<T: std::str::FromStr>(&self, col: usize, example: &str) -> Result<T, InventoryError> {
        let v = self.text(col)?;
        v.parse().map_err(|_| {
            self.err(
                col,
                format!("{v:?} is not a valid number; write e.g. {example}"),
            )
        })
    }
}

/// Reads a table whose header is `header`, or `header` without its last `optional` columns
/// (columns added later; the rows then have as many fields as the header found).
fn read_table<T>(
    path: &Path,
    header: &'static [&'static str],
    optional: usize,
    parse: fn(&Row) -> Result<T, InventoryError>,
) -> Result<Vec<(u64, T)>, InventoryError> {
    let file = std::fs::File::open(path).map_err(|source| InventoryError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(file);
    let invalid = |line: u64, message: String| InventoryError::Invalid {
        file: path.to_path_buf(),
        line,
        column: None,
        message,
    };
    let found = reader
        .headers()
        .map_err(|e| invalid(1, format!("unreadable header: {e}")))?
        .clone();
    let found: Vec<&str> = found.iter().map(str::trim).collect();
    let columns = found.len();
    if columns > header.len() || columns < header.len() - optional || found[..] != header[..columns]
    {
        return Err(invalid(
            1,
            format!(
                "header is `{}`; it must be exactly `{}`",
                found.join(","),
                header.join(",")
            ),
        ));
    }
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                return Err(invalid(line, format!("not valid CSV: {e}")));
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if record.len() != columns {
            return Err(invalid(
                line,
                format!(
                    "has {} fields, expected {} ({}); quote values that contain commas",
                    record.len(),
                    columns,
                    header[..columns].join(",")
                ),
            ));
        }
        let row = Row {
            file: path,
            line,
            header,
            record: &record,
        };
        rows.push((line, parse(&row)?));
    }
    Ok(rows)
}

fn parse_site(row: &Row) -> Result<Site, InventoryError> {
    let id = SiteId::new(row.text(0)?).map_err(|e| row.err(0, e.to_string()))?;
    let departement = row.text(3)?;
    if geo::departement(departement).is_none() {
        return Err(row.err(
            3,
            format!(
                "{departement:?} is not a département code; use the INSEE code, e.g. 35, 2A, 974"
            ),
        ));
    }
    let agents: u32 = row.number(4, "42")?;
    if agents > 100_000 {
        return Err(row.err(
            4,
            format!("{agents} agents on one site is not plausible (max 100000)"),
        ));
    }
    let latitude: f64 = row.number(5, "48.11")?;
    if !(-90.0..=90.0).contains(&latitude) {
        return Err(row.err(5, format!("{latitude} is outside -90..90")));
    }
    let longitude: f64 = row.number(6, "-1.68")?;
    if !(-180.0..=180.0).contains(&longitude) {
        return Err(row.err(6, format!("{longitude} is outside -180..180")));
    }
    let exporters = row
        .record
        .get(8)
        .unwrap_or("")
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpAddr>().map_err(|_| {
                row.err(
                    8,
                    format!("{s:?} is not an IP address; separate several with ';', e.g. 10.1.2.1;10.1.2.2"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let prefixes =
        parse_prefixes(row.record.get(9).unwrap_or("")).map_err(|message| row.err(9, message))?;
    Ok(Site {
        id,
        name: row.text(1)?.to_string(),
        ministry: row.text(2)?.to_string(),
        departement: departement.to_string(),
        agents,
        latitude,
        longitude,
        credential_ref: row.text(7)?.to_string(),
        exporters,
        prefixes,
    })
}

/// Parses a `site_prefixes` cell: IPv4/IPv6 prefixes separated by `;` (may be empty), each
/// canonical (no host bits), not `/0`, and none overlapping another of the same site.
///
/// # Errors
/// What is wrong and how to write it right.
pub(crate) fn parse_prefixes(cell: &str) -> Result<Vec<ipnet::IpNet>, String> {
    let mut out: Vec<ipnet::IpNet> = Vec::new();
    for s in cell.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let net: ipnet::IpNet = s.parse().map_err(|_| {
            format!(
                "{s:?} is not an IPv4 or IPv6 prefix; write address/length, several separated by ';', e.g. 10.42.0.0/16;fd52:4945:2a::/48"
            )
        })?;
        if net.prefix_len() == 0 {
            return Err(format!(
                "{s} covers every address, so all traffic would look internal; list the site's own ranges, e.g. 10.42.0.0/16"
            ));
        }
        if net != net.trunc() {
            return Err(format!(
                "{s} has host bits set; write the network address: {}",
                net.trunc()
            ));
        }
        if let Some(other) = out.iter().find(|o| o.contains(&net) || net.contains(*o)) {
            return Err(format!(
                "{net} overlaps {other}, listed before for the same site; list each range once"
            ));
        }
        out.push(net);
    }
    Ok(out)
}

fn parse_link(row: &Row) -> Result<Link, InventoryError> {
    let id = LinkId::new(row.text(0)?).map_err(|e| row.err(0, e.to_string()))?;
    let site = SiteId::new(row.text(1)?).map_err(|e| row.err(1, e.to_string()))?;
    let role = match row.text(2)? {
        "primary" => LinkRole::Primary,
        "backup" => LinkRole::Backup,
        other => return Err(row.err(2, format!("{other:?} is not a role; use primary or backup"))),
    };
    let tech = row.text(4)?;
    let technology = Technology::parse(tech).ok_or_else(|| {
        row.err(
            4,
            format!("{tech:?} is not a technology; use one of fibre, xdsl, 4g, 5g, satellite"),
        )
    })?;
    let bandwidth_mbps: f64 = row.number(5, "100 or 0.512")?;
    if !(bandwidth_mbps > 0.0 && bandwidth_mbps <= 400_000.0) {
        return Err(row.err(
            5,
            format!("{bandwidth_mbps} Mbit/s is not a plausible bandwidth"),
        ));
    }
    let cost = row.text(6)?;
    let monthly_cost_cents = parse_cents(cost).ok_or_else(|| {
        row.err(
            6,
            format!(
                "{cost:?} is not an amount in euros with at most 2 decimals; write e.g. 349.90"
            ),
        )
    })?;
    Ok(Link {
        id,
        site,
        role,
        operator: row.text(3)?.to_string(),
        technology,
        bandwidth_mbps,
        monthly_cost_cents,
    })
}

/// The optional `sflow_ifindex` cell of a link: empty, or an interface index.
fn parse_ifindex(row: &Row) -> Result<Option<u32>, InventoryError> {
    let v = row.record.get(7).unwrap_or("").trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| {
        row.err(
            7,
            format!("{v:?} is not an interface index; write the router's ifIndex of this access, e.g. 3, or leave it empty"),
        )
    })
}

/// Parses a non-negative euro amount with at most two decimals ("349.9", "1200", "0.05") into
/// cents, exactly (no float rounding).
pub(crate) fn parse_cents(s: &str) -> Option<i64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || whole.len() > 12 {
        return None;
    }
    if frac.len() > 2 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let cents = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().ok()? * 10,
        _ => frac.parse::<i64>().ok()?,
    };
    Some(whole.parse::<i64>().ok()? * 100 + cents)
}

fn cross_check(
    sites_path: &Path,
    links_path: &Path,
    sites: &[(u64, Site)],
    links: &[(u64, Link)],
) -> Result<(), InventoryError> {
    let at = |file: &Path, line: u64, col: usize, header: &'static [&'static str], message| {
        InventoryError::Invalid {
            file: PathBuf::from(file),
            line,
            column: Some((col + 1, header[col])),
            message,
        }
    };
    let mut site_lines: HashMap<&SiteId, u64> = HashMap::new();
    let mut creds: HashMap<&str, u64> = HashMap::new();
    let mut exporters: HashMap<IpAddr, u64> = HashMap::new();
    for (line, s) in sites {
        if let Some(first) = site_lines.insert(&s.id, *line) {
            return Err(at(sites_path, *line, 0, &SITES_HEADER, format!(
                "duplicate site id {}: already defined on line {first}; give each site its own id", s.id
            )));
        }
        if let Some(first) = creds.insert(&s.credential_ref, *line) {
            return Err(at(sites_path, *line, 7, &SITES_HEADER, format!(
                "credential_ref {:?} is already used by the site on line {first}; each probe needs its own credential",
                s.credential_ref
            )));
        }
        for a in &s.exporters {
            if let Some(first) = exporters.insert(*a, *line) {
                return Err(at(sites_path, *line, 8, &SITES_HEADER, format!(
                    "exporter {a} already belongs to the site on line {first}; an exporter address identifies one site"
                )));
            }
        }
    }
    let mut link_lines: HashMap<&LinkId, u64> = HashMap::new();
    let mut primaries: HashSet<&SiteId> = HashSet::new();
    for (line, l) in links {
        if let Some(first) = link_lines.insert(&l.id, *line) {
            return Err(at(
                links_path,
                *line,
                0,
                &LINKS_HEADER,
                format!(
                    "duplicate link id {}: already defined on line {first}",
                    l.id
                ),
            ));
        }
        if !site_lines.contains_key(&l.site) {
            return Err(at(
                links_path,
                *line,
                1,
                &LINKS_HEADER,
                format!(
                    "site {} is not in {}; add the site there or fix the id",
                    l.site,
                    sites_path.display()
                ),
            ));
        }
        if l.role == LinkRole::Primary && !primaries.insert(&l.site) {
            return Err(at(
                links_path,
                *line,
                2,
                &LINKS_HEADER,
                format!(
                    "site {} already has a primary link; mark the other access as backup",
                    l.site
                ),
            ));
        }
    }
    if let Some((line, s)) = sites.iter().find(|(_, s)| !primaries.contains(&s.id)) {
        return Err(InventoryError::Invalid {
            file: sites_path.to_path_buf(),
            line: *line,
            column: None,
            message: format!(
                "site {} has no primary link in {}; add one (role primary)",
                s.id,
                links_path.display()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITES: &str = "site_id,name,ministry,departement,agents,latitude,longitude,credential_ref,netflow_exporters\n\
        S1,\"Préfecture, Rennes\",Intérieur,35,420,48.11,-1.68,probe-S1,10.0.0.1;10.0.0.2\n\
        S2,DGFiP Cayenne,Économie et Finances,973,35,4.94,-52.33,probe-S2,\n";
    const LINKS: &str =
        "link_id,site_id,role,operator,technology,bandwidth_mbps,monthly_cost_eur\n\
        S1-P,S1,primary,Orange,fibre,1000,1450.50\n\
        S1-B,S1,backup,SFR,4g,50,59.9\n\
        S2-P,S2,primary,Orange Caraïbe,satellite,4,650\n";

    fn with_files<T>(sites: &str, links: &str, f: impl FnOnce(&Path) -> T) -> T {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sites.csv"), sites).unwrap();
        std::fs::write(dir.path().join("links.csv"), links).unwrap();
        f(dir.path())
    }

    fn load(sites: &str, links: &str) -> Result<Inventory, InventoryError> {
        with_files(sites, links, load_dir)
    }

    /// The error text with the temporary directory stripped, so assertions read well.
    fn message(sites: &str, links: &str) -> String {
        with_files(sites, links, |dir| {
            let e = load_dir(dir).unwrap_err().to_string();
            e.replace(&format!("{}/", dir.display()), "")
        })
    }

    #[test]
    fn loads_a_valid_inventory_with_exact_cents() {
        let inv = load(SITES, LINKS).unwrap();
        assert_eq!(inv.sites.len(), 2);
        assert_eq!(inv.sites[0].name, "Préfecture, Rennes");
        assert_eq!(inv.total_agents(), 455);
        assert_eq!(inv.dual_homed_sites(), 1);
        let costs: Vec<i64> = inv.links.iter().map(|l| l.monthly_cost_cents).collect();
        assert_eq!(costs, [145_050, 5_990, 65_000]);
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(inv.site_of_exporter(&ip).unwrap().id.as_str(), "S1");
    }

    #[test]
    fn errors_name_line_column_and_fix() {
        let bad_agents = SITES.replace(",35,420,", ",35,lots,");
        assert_eq!(
            message(&bad_agents, LINKS),
            "sites.csv: line 2, column 5 (agents): \"lots\" is not a valid number; write e.g. 42"
        );
        let dup = format!("{SITES}S1,Autre,Justice,75,3,48.8,2.3,probe-S9,\n");
        assert_eq!(
            message(&dup, LINKS),
            "sites.csv: line 4, column 1 (site_id): duplicate site id S1: already defined on line 2; give each site its own id"
        );
        let orphan = format!("{LINKS}S9-P,S9,primary,SFR,xdsl,20,80\n");
        assert!(message(SITES, &orphan)
            .starts_with("links.csv: line 5, column 2 (site_id): site S9 is not in"));
        let bad_dep = SITES.replace(",973,", ",20,");
        assert!(message(&bad_dep, LINKS).starts_with("sites.csv: line 3, column 4 (departement)"));
        let bad_cost = LINKS.replace("59.9", "59.999");
        assert!(
            message(SITES, &bad_cost).starts_with("links.csv: line 3, column 7 (monthly_cost_eur)")
        );
        let bad_header = SITES.replacen("agents", "staff", 1);
        assert!(message(&bad_header, LINKS).starts_with("sites.csv: line 1: header is"));
    }

    #[test]
    fn example_inventory_in_configs_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/inventory");
        let inv = load_dir(&dir).unwrap();
        assert!(inv.sites.len() >= 100, "{} sites", inv.sites.len());
        assert_eq!(
            inv.links_of(&inv.sites[0].id)
                .filter(|l| l.role == LinkRole::Primary)
                .count(),
            1
        );
    }

    #[test]
    fn site_prefixes_are_optional_and_validated() {
        // Nine columns (before site_prefixes existed): no prefixes.
        let inv = load(SITES, LINKS).unwrap();
        assert!(inv.sites.iter().all(|s| s.prefixes.is_empty()));
        let with = SITES
            .replacen("netflow_exporters", "netflow_exporters,site_prefixes", 1)
            .replace(
                "10.0.0.1;10.0.0.2\n",
                "10.0.0.1;10.0.0.2,10.42.0.0/16; fd52:4945:2a::/48\n",
            )
            .replace("probe-S2,\n", "probe-S2,,\n");
        let inv = load(&with, LINKS).unwrap();
        let got: Vec<String> = inv.sites[0]
            .prefixes
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(got, ["10.42.0.0/16", "fd52:4945:2a::/48"]);
        assert!(inv.sites[1].prefixes.is_empty());
        let bad = |cell: &str| {
            message(
                &with.replace("10.42.0.0/16; fd52:4945:2a::/48", cell),
                LINKS,
            )
        };
        assert_eq!(
            bad("10.42.0.0/33"),
            "sites.csv: line 2, column 10 (site_prefixes): \"10.42.0.0/33\" is not an IPv4 or IPv6 prefix; write address/length, several separated by ';', e.g. 10.42.0.0/16;fd52:4945:2a::/48"
        );
        assert_eq!(
            bad("10.42.1.7/16"),
            "sites.csv: line 2, column 10 (site_prefixes): 10.42.1.7/16 has host bits set; write the network address: 10.42.0.0/16"
        );
        assert_eq!(
            bad("10.42.0.0/16;10.42.3.0/24"),
            "sites.csv: line 2, column 10 (site_prefixes): 10.42.3.0/24 overlaps 10.42.0.0/16, listed before for the same site; list each range once"
        );
        assert!(bad("::/0").contains("covers every address"));
        assert!(bad("rennes").contains("is not an IPv4 or IPv6 prefix"));
        // A row with a missing cell in a 10-column file names the count.
        let short = with.replace("probe-S2,,\n", "probe-S2,\n");
        assert!(message(&short, LINKS).starts_with("sites.csv: line 3: has 9 fields, expected 10"));
        // A header with an unknown extra column is refused.
        let extra = with.replacen("site_prefixes", "site_prefixes,vlan", 1);
        assert!(message(&extra, LINKS).starts_with("sites.csv: line 1: header is"));
    }

    #[test]
    fn sflow_ifindexes_are_optional_and_map_links() {
        // Seven columns (before sflow_ifindex existed): no mapping.
        let inv = load(SITES, LINKS).unwrap();
        assert!(inv.link_of_ifindex(0, 3).is_none());
        let with = LINKS
            .replacen("monthly_cost_eur", "monthly_cost_eur,sflow_ifindex", 1)
            .replace("1450.50\n", "1450.50,3\n")
            .replace("59.9\n", "59.9,4\n")
            .replace(",650\n", ",650,\n");
        let inv = load(SITES, &with).unwrap();
        let link = |site, ifindex| inv.link_of_ifindex(site, ifindex).map(|l| l.id.as_str());
        assert_eq!(
            (link(0, 3), link(0, 4), link(0, 5)),
            (Some("S1-P"), Some("S1-B"), None)
        );
        // ifIndex 3 of S2 is another interface: not S1's.
        assert_eq!(link(1, 3), None);
        assert_eq!(
            message(SITES, &with.replace("59.9,4\n", "59.9,3\n")),
            "links.csv: line 3, column 8 (sflow_ifindex): ifIndex 3 is already the link on line 2 of site S1; each interface is one link"
        );
        assert_eq!(
            message(SITES, &with.replace("59.9,4\n", "59.9,ge-0/0/1\n")),
            "links.csv: line 3, column 8 (sflow_ifindex): \"ge-0/0/1\" is not an interface index; write the router's ifIndex of this access, e.g. 3, or leave it empty"
        );
    }

    #[test]
    fn cents_are_parsed_exactly() {
        assert_eq!(parse_cents("0.05"), Some(5));
        assert_eq!(parse_cents("1200"), Some(120_000));
        assert_eq!(parse_cents("19.9"), Some(1_990));
        for bad in ["", "-1", "1.234", "1,5", "abc", ".5"] {
            assert_eq!(parse_cents(bad), None, "{bad}");
        }
    }
}
