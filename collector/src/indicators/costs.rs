//! The cost model (`configs/costs.toml`): shared national costs with their allocation key,
//! one-off costs amortised over years, the reference €/agent/year, and the site-at-risk rule.
//! Per-link monthly prices are not here: they come from the inventory (`links.csv`).
//!
//! Money is integer euro cents everywhere (`i64`); amounts in the file are whole euros so that
//! the file itself cannot hold a fraction of a cent. [`allocate`] splits an amount over sites
//! by largest remainder, so the parts always sum to the amount exactly.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// A cost file that cannot be used; names the file and the key.
pub type CostsError = rie_common::ConfigFileError;

/// How a shared cost is split over sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AllocationKey {
    /// In proportion to the site's agents.
    PerAgent,
    /// The same share for every site.
    PerSite,
    /// In proportion to the bytes the site exchanged in the period (`flow_minute`); when no
    /// site has traffic in the period, falls back to `per_agent` (reported in the notes).
    PerTrafficVolume,
    /// In proportion to the sum of the contracted bandwidth of the site's links.
    PerContractedBandwidth,
}

impl AllocationKey {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerAgent => "per_agent",
            Self::PerSite => "per_site",
            Self::PerTrafficVolume => "per_traffic_volume",
            Self::PerContractedBandwidth => "per_contracted_bandwidth",
        }
    }
}

/// A recurring national cost, in whole euros per year.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SharedCost {
    /// Short identifier, shown in reports (e.g. `backbone`).
    pub name: String,
    /// Human description (French, shown in the HTML report).
    #[serde(default)]
    pub label: String,
    pub annual_eur: i64,
    pub allocation: AllocationKey,
}

/// A one-off cost (a migration, equipment) spread evenly over `amortisation_years`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OneOffCost {
    pub name: String,
    #[serde(default)]
    pub label: String,
    pub amount_eur: i64,
    pub amortisation_years: u32,
    pub allocation: AllocationKey,
}

/// Which sites the report lists as "at risk".
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RiskConfig {
    /// A single-homed site with at least this many agents is at risk.
    #[serde(default = "default_risk_agents")]
    pub min_agents: u32,
    /// A single-homed site whose availability is below this percentage is at risk.
    #[serde(default = "default_risk_availability")]
    pub availability_target_pct: f64,
    /// Length of the ranked list.
    #[serde(default = "default_risk_top")]
    pub top: usize,
}

/// The whole cost model.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CostModel {
    /// Reference cost per agent per year, whole euros (DINUM roadmap 2023: about 100 €).
    #[serde(default = "default_reference")]
    pub reference_eur_per_agent_year: i64,
    #[serde(default = "default_shared")]
    pub shared: Vec<SharedCost>,
    #[serde(default = "default_one_off")]
    pub one_off: Vec<OneOffCost>,
    #[serde(default)]
    pub risk: RiskConfig,
    /// Ministry names the inventory should use; sites with another name are still reported
    /// under it, and listed in the report's notes. Empty: no check.
    #[serde(default = "default_ministries")]
    pub ministries: Vec<String>,
    /// The nation's number of sites, which the national costs are for. An inventory with
    /// fewer sites is a sample (the demo, a lab, one ministry's collector): the national costs
    /// are scaled to its share, sites / `national_sites` ([`CostModel::period_items`]), instead
    /// of being borne by its few sites. 0: never scale.
    #[serde(default = "default_national_sites")]
    pub national_sites: u32,
}

/// The ministries of the generated national inventory (`inventory::generate`).
fn default_ministries() -> Vec<String> {
    [
        "Économie et Finances",
        "Intérieur",
        "Justice",
        "Transition écologique",
        "Travail et Solidarités",
        "Agriculture",
        "Éducation nationale",
        "Armées",
        "Culture",
        "Enseignement supérieur et Recherche",
        "Services du Premier ministre",
        "Outre-mer",
        "Europe et Affaires étrangères",
    ]
    .map(String::from)
    .to_vec()
}

fn default_reference() -> i64 {
    100
}
/// DINUM roadmap 2023: about 14,000 sites served (`shared/rie-facts.md`).
fn default_national_sites() -> u32 {
    14_000
}
fn default_risk_agents() -> u32 {
    100
}
fn default_risk_availability() -> f64 {
    99.5
}
fn default_risk_top() -> usize {
    20
}

/// Defaults calibrated on `shared/rie-facts.md`: about 10 M€ a year of DINUM backbone and
/// interconnections (press, 2023); the rest sized so that, with the generated inventory's
/// 63.92 €/agent/year of access links, the national figure lands near the DINUM 100 €.
fn default_shared() -> Vec<SharedCost> {
    let c = |name: &str, label: &str, annual_eur, allocation| SharedCost {
        name: name.into(),
        label: label.into(),
        annual_eur,
        allocation,
    };
    vec![
        c(
            "backbone",
            "Cœur de réseau et interconnexions (DINUM)",
            10_000_000,
            AllocationKey::PerContractedBandwidth,
        ),
        c(
            "internet_security",
            "Passerelles internet et services de sécurité",
            12_000_000,
            AllocationKey::PerTrafficVolume,
        ),
        c(
            "noc_operations",
            "Supervision (NOC) et exploitation",
            9_000_000,
            AllocationKey::PerSite,
        ),
        c(
            "hosting",
            "Hébergement des services centraux",
            2_000_000,
            AllocationKey::PerAgent,
        ),
    ]
}

fn default_one_off() -> Vec<OneOffCost> {
    vec![OneOffCost {
        name: "access_modernisation".into(),
        label: "Modernisation des accès (programme Cristal), amortie".into(),
        amount_eur: 15_000_000,
        amortisation_years: 5,
        allocation: AllocationKey::PerSite,
    }]
}

impl Default for RiskConfig {
    fn default() -> Self {
        Self {
            min_agents: default_risk_agents(),
            availability_target_pct: default_risk_availability(),
            top: default_risk_top(),
        }
    }
}

impl Default for CostModel {
    fn default() -> Self {
        Self {
            reference_eur_per_agent_year: default_reference(),
            shared: default_shared(),
            one_off: default_one_off(),
            risk: RiskConfig::default(),
            ministries: default_ministries(),
            national_sites: default_national_sites(),
        }
    }
}

/// Largest amount accepted in the file (10 G€): keeps every product in `i128` far from overflow.
const MAX_EUR: i64 = 10_000_000_000;

impl CostModel {
    /// Reads and validates a cost file.
    ///
    /// # Errors
    /// [`CostsError`] naming the file and, for bad values, the key.
    pub fn load(path: &Path) -> Result<Self, CostsError> {
        let model: CostModel = rie_common::read_toml(path)?;
        model.validate(&path.display().to_string())?;
        Ok(model)
    }

    /// The file at `path`, or the built-in defaults when there is none.
    ///
    /// # Errors
    /// See [`CostModel::load`].
    pub fn load_or_default(path: Option<&Path>) -> Result<Self, CostsError> {
        path.map_or_else(|| Ok(Self::default()), Self::load)
    }

    /// Checks values without I/O; `file` names the source in errors.
    ///
    /// # Errors
    /// [`CostsError::Invalid`] with the key path, e.g. `shared[2].annual_eur`.
    pub fn validate(&self, file: &str) -> Result<(), CostsError> {
        let bad = |key: String, message: String| CostsError::Invalid {
            file: file.to_string(),
            key,
            message,
        };
        if !(1..=100_000).contains(&self.reference_eur_per_agent_year) {
            return Err(bad(
                "reference_eur_per_agent_year".into(),
                format!(
                    "{} is out of range; write whole euros, e.g. 100",
                    self.reference_eur_per_agent_year
                ),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, s) in self.shared.iter().enumerate() {
            if s.name.trim().is_empty() || !names.insert(s.name.clone()) {
                return Err(bad(
                    format!("shared[{i}].name"),
                    format!("{:?} is empty or used twice; give each cost its own name, e.g. \"backbone\"", s.name),
                ));
            }
            if !(0..=MAX_EUR).contains(&s.annual_eur) {
                return Err(bad(
                    format!("shared[{i}].annual_eur"),
                    format!(
                        "{} is out of range; write whole euros per year, e.g. 10000000",
                        s.annual_eur
                    ),
                ));
            }
        }
        for (i, o) in self.one_off.iter().enumerate() {
            if o.name.trim().is_empty() || !names.insert(o.name.clone()) {
                return Err(bad(
                    format!("one_off[{i}].name"),
                    format!(
                        "{:?} is empty or used twice; give each cost its own name",
                        o.name
                    ),
                ));
            }
            if !(0..=MAX_EUR).contains(&o.amount_eur) {
                return Err(bad(
                    format!("one_off[{i}].amount_eur"),
                    format!(
                        "{} is out of range; write whole euros, e.g. 15000000",
                        o.amount_eur
                    ),
                ));
            }
            if !(1..=50).contains(&o.amortisation_years) {
                return Err(bad(
                    format!("one_off[{i}].amortisation_years"),
                    format!("{} is not 1 to 50; e.g. 5", o.amortisation_years),
                ));
            }
        }
        if !(0.0..=100.0).contains(&self.risk.availability_target_pct) {
            return Err(bad(
                "risk.availability_target_pct".into(),
                format!(
                    "{} is not a percentage; e.g. 99.5",
                    self.risk.availability_target_pct
                ),
            ));
        }
        Ok(())
    }

    /// The share of the national costs an inventory of `sites` sites bears: the whole when
    /// it has at least [`CostModel::national_sites`] (or scaling is off), else
    /// `sites / national_sites`.
    pub fn share(&self, sites: usize) -> NationalShare {
        let sites = u32::try_from(sites).unwrap_or(u32::MAX);
        NationalShare {
            sites,
            national_sites: self.national_sites,
            scaled: self.national_sites > 0 && sites < self.national_sites,
        }
    }

    /// Every national cost with its amount for a period of `months` whole months, cents, for
    /// an inventory bearing `share` of them. Scaling and proration are one rounding (half up
    /// to the cent) of the exact product.
    pub fn period_items(&self, months: u32, share: &NationalShare) -> Vec<PeriodCost> {
        let (num, den) = if share.scaled {
            (
                i128::from(months) * i128::from(share.sites),
                12 * i128::from(share.national_sites),
            )
        } else {
            (i128::from(months), 12)
        };
        let shared = self.shared.iter().map(|s| PeriodCost {
            name: s.name.clone(),
            label: s.label.clone(),
            allocation: s.allocation,
            cents: prorate(i128::from(s.annual_eur) * 100, num, den),
        });
        let one_off = self.one_off.iter().map(|o| PeriodCost {
            name: o.name.clone(),
            label: o.label.clone(),
            allocation: o.allocation,
            cents: prorate(
                i128::from(o.amount_eur) * 100,
                num,
                den * i128::from(o.amortisation_years),
            ),
        });
        shared.chain(one_off).collect()
    }
}

/// How much of the national costs an inventory bears ([`CostModel::share`]); shown in the
/// report's notes when `scaled`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NationalShare {
    /// Sites of the inventory.
    pub sites: u32,
    /// [`CostModel::national_sites`].
    pub national_sites: u32,
    /// True when the national costs are scaled to `sites / national_sites`.
    pub scaled: bool,
}

/// One national cost for the report's period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeriodCost {
    pub name: String,
    pub label: String,
    pub allocation: AllocationKey,
    pub cents: i64,
}

/// `amount × num / den` rounded to the nearest cent, halves up (amounts are never negative).
pub fn prorate(amount: i128, num: i128, den: i128) -> i64 {
    let v = (2 * amount * num + den) / (2 * den);
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Splits `amount` cents over items in proportion to `weights`, exactly.
///
/// Rule (largest remainder, Hamilton): each item first gets `floor(amount × w / W)`; the cents
/// left over (fewer than the number of items) go one each to the items with the largest
/// remainders `amount × w mod W`, ties to the lower index. The parts sum to `amount` to the
/// cent, and the same input always gives the same split. When every weight is zero the amount
/// is split per item (equal weights); with no items, nothing is returned.
pub fn allocate(amount: i64, weights: &[u128]) -> Vec<i64> {
    if weights.is_empty() {
        return Vec::new();
    }
    let total: u128 = weights.iter().sum();
    if total == 0 {
        return allocate(amount, &vec![1; weights.len()]);
    }
    let neg = amount < 0;
    let a = u128::from(amount.unsigned_abs());
    let mut parts = Vec::with_capacity(weights.len());
    let mut rems = Vec::with_capacity(weights.len());
    let mut given: u128 = 0;
    for (i, &w) in weights.iter().enumerate() {
        // a ≤ 1e12 cents and weights ≤ 1e15 in practice: far within u128.
        let p = a * w;
        parts.push(p / total);
        rems.push((p % total, i));
        given += p / total;
    }
    let left = (a - given) as usize;
    rems.sort_unstable_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
    for &(_, i) in rems.iter().take(left) {
        parts[i] += 1;
    }
    parts
        .into_iter()
        .map(|p| {
            let p = i64::try_from(p).unwrap_or(i64::MAX);
            if neg {
                -p
            } else {
                p
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_by_hand() {
        // 100 cents over weights 1,1,1: 33 each, 1 left, ties go to the lowest index.
        assert_eq!(allocate(100, &[1, 1, 1]), vec![34, 33, 33]);
        // 1000 over 3,2,2 (W = 7): floors 3000/7 = 428 r 4, 2000/7 = 285 r 5, 285 r 5;
        // 2 cents left go to the two remainders 5.
        assert_eq!(allocate(1000, &[3, 2, 2]), vec![428, 286, 286]);
        assert_eq!(allocate(7, &[0, 0]), vec![4, 3]);
        assert_eq!(allocate(5, &[]), Vec::<i64>::new());
        assert_eq!(allocate(-100, &[1, 1, 1]), vec![-34, -33, -33]);
    }

    #[test]
    fn allocate_sums_exactly_for_random_inputs() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..2_000 {
            let n = rng.gen_range(1..300);
            let weights: Vec<u128> = (0..n)
                .map(|_| {
                    if rng.gen_bool(0.2) {
                        0
                    } else {
                        rng.gen_range(0..5_000_000)
                    }
                })
                .collect();
            let amount = rng.gen_range(0..1_000_000_000_000i64);
            let parts = allocate(amount, &weights);
            assert_eq!(parts.iter().sum::<i64>(), amount);
            let total: u128 = weights.iter().sum();
            for (p, w) in parts.iter().zip(&weights) {
                if total > 0 {
                    let exact = amount as f64 * *w as f64 / total as f64;
                    assert!((*p as f64 - exact).abs() <= 1.0 + exact * 1e-12);
                }
            }
        }
    }

    #[test]
    fn prorate_rounds_half_up() {
        // 10,000,000 € a year, one month: 83,333,333.33 cents → 83,333,333.
        assert_eq!(prorate(1_000_000_000, 1, 12), 83_333_333);
        // 15 M€ over 5 years, one quarter: 75,000,000 cents.
        assert_eq!(prorate(1_500_000_000, 3, 60), 75_000_000);
        assert_eq!(prorate(1, 1, 2), 1);
        assert_eq!(prorate(1, 1, 3), 0);
    }

    #[test]
    fn a_sample_bears_its_share_of_the_national_costs() {
        let m = CostModel::default();
        // The nation (or more): the whole, 36 M€ a year (33 M€ shared, 15 M€ over 5 years).
        let whole: i64 = m
            .period_items(12, &m.share(14_000))
            .iter()
            .map(|c| c.cents)
            .sum();
        assert_eq!(whole, 3_600_000_000);
        assert!(!m.share(20_000).scaled);
        // 300 sites: 300/14,000 of each, rounded half up once. Backbone: 10 M€ × 300 / 14,000
        // = 214,285.714… € → 21,428,571 cents; one-off: 3 M€ a year × 300 / 14,000 = 64,285.714… €.
        let share = m.share(300);
        assert!(share.scaled);
        let items = m.period_items(12, &share);
        assert_eq!(items[0].cents, 21_428_571);
        assert_eq!(items[4].cents, 6_428_571);
        // One month of it: 10 M€ × 300 / (12 × 14,000) = 17,857.142… € → 1,785,714 cents.
        assert_eq!(m.period_items(1, &share)[0].cents, 1_785_714);
        // Scaling off.
        let off = CostModel {
            national_sites: 0,
            ..CostModel::default()
        };
        assert!(!off.share(300).scaled);
        assert_eq!(
            off.period_items(12, &off.share(300))[0].cents,
            1_000_000_000
        );
    }

    #[test]
    fn defaults_validate_and_file_matches_defaults() {
        CostModel::default().validate("defaults").unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/costs.toml");
        let m = CostModel::load(&path).unwrap();
        assert_eq!(m, CostModel::default());
    }

    #[test]
    fn bad_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("costs.toml");
        std::fs::write(
            &p,
            "[[one_off]]\nname = \"x\"\namount_eur = 10\namortisation_years = 0\nallocation = \"per_site\"\n",
        )
        .unwrap();
        let e = CostModel::load(&p).unwrap_err().to_string();
        assert!(e.contains("one_off[0].amortisation_years"), "{e}");
        std::fs::write(
            &p,
            "[[shared]]\nname = \"x\"\nannual_eur = 10\nallocation = \"per_cow\"\n",
        )
        .unwrap();
        let e = CostModel::load(&p).unwrap_err().to_string();
        assert!(e.contains("costs.toml") && e.contains("per_cow"), "{e}");
    }
}
