// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};

use super::*;
use crate::inventory::{generate, load_dir, GenerateOptions};

fn inventory(sites: usize) -> Inventory {
    let dir = tempfile::tempdir().unwrap();
    generate(&GenerateOptions::new(sites, 7), dir.path()).unwrap();
    load_dir(dir.path()).unwrap()
}

fn params(canary: &str, waves: &str, max_bad: &str) -> RolloutParams {
    RolloutParams {
        scope: "national".into(),
        canary: canary.into(),
        waves: waves.into(),
        wave_interval: "10m".into(),
        max_bad: max_bad.into(),
        canary_sites: Vec::new(),
    }
}

fn running(inv: &Inventory, p: &RolloutParams) -> Rollout {
    let (mut r, _) = new_rollout(p, inv, "test", 1_000).unwrap();
    r.id = 3;
    r.version = 9;
    r.previous_version = 4;
    r.state = RolloutState::Running;
    r
}

#[test]
fn shares_parse_to_per_mille_and_bad_ones_name_the_flag() {
    assert_eq!(parse_percent("canary", "1%"), Ok(10));
    assert_eq!(parse_percent("canary", "0.5%"), Ok(5));
    assert_eq!(parse_percent("waves", "100%"), Ok(1000));
    assert_eq!(
        parse_percent("canary", "1"),
        Err("canary: \"1\" is not a share; write it as a percentage, e.g. 1% or 0.5%".into())
    );
    assert_eq!(
        parse_percent("canary", "0.05%"),
        Err("canary: 0.05% is finer than 0.1%; round it".into())
    );
    assert_eq!(
        parse_percent("max-bad", "120%"),
        Err("max-bad: 120% is outside 0%..100%".into())
    );
}

#[test]
fn flags_are_checked_with_the_fix() {
    let inv = inventory(50);
    let err = |p: RolloutParams| new_rollout(&p, &inv, "t", 0).unwrap_err().to_string();
    assert_eq!(
        err(params("1%", "10%,50%", "2%")),
        "waves: \"10%,50%\" must end with 100% (e.g. 10%,50%,100%), or the rollout would never finish"
    );
    assert_eq!(
        err(params("20%", "10%,100%", "2%")),
        "waves: \"10%,100%\" must grow, each above the canary's 20%: they are cumulative shares"
    );
    let mut p = params("1%", "10%,100%", "2%");
    p.wave_interval = "soon".into();
    assert!(err(p).starts_with("wave-interval: \"soon\": "));
    let mut p = params("1%", "10%,100%", "2%");
    p.canary_sites = vec!["NOPE".into()];
    assert_eq!(err(p), "canary-site: NOPE is not in the inventory");
    let mut p = params("1%", "10%,100%", "2%");
    p.scope = "ministry:Intérieur".into();
    let outside = inv
        .sites
        .iter()
        .find(|s| s.ministry != "Intérieur")
        .unwrap();
    p.canary_sites = vec![outside.id.as_str().to_string()];
    assert_eq!(
        err(p),
        format!(
            "canary-site: {} is not in scope ministry:Intérieur",
            outside.id
        )
    );
}

#[test]
fn wave_counts_are_cumulative_ceilings_with_at_least_one_canary() {
    let inv = inventory(10);
    let r = running(&inv, &params("1%", "10%,50%,100%", "2%"));
    assert_eq!(r.counts(14_000, 0), vec![140, 1_400, 7_000, 14_000]);
    assert_eq!(r.counts(203, 0), vec![3, 21, 102, 203]);
    // At least one site; the pinned canary sites count in.
    assert_eq!(r.counts(40, 0), vec![1, 4, 20, 40]);
    assert_eq!(r.counts(40, 3), vec![3, 4, 20, 40]);
    assert_eq!(r.wave_name(0), "canary");
    assert_eq!(r.wave_name(2), "wave 2 (50%)");
}

#[test]
fn the_canary_is_spread_over_ministries_technologies_and_departements() {
    let inv = inventory(2_000);
    let national = Scope::National;
    let canary = 20;
    let o = order(&inv, &national, 3, canary, &[]);
    // Every site exactly once.
    assert_eq!(o.len(), 2_000);
    assert_eq!(o.iter().collect::<HashSet<_>>().len(), 2_000);
    let ministries_all: HashSet<&str> = inv.sites.iter().map(|s| s.ministry.as_str()).collect();
    let picked: Vec<&crate::inventory::Site> = o[..canary].iter().map(|&i| &inv.sites[i]).collect();
    let ministries: HashSet<&str> = picked.iter().map(|s| s.ministry.as_str()).collect();
    let deps: HashSet<&str> = picked.iter().map(|s| s.departement.as_str()).collect();
    // As many ministries as the canary can hold, and no département twice.
    assert_eq!(ministries.len(), ministries_all.len().min(canary));
    assert_eq!(deps.len(), canary);
    // The same inventory and seed give the same order; another seed another one.
    assert_eq!(order(&inv, &national, 3, canary, &[]), o);
    assert_ne!(order(&inv, &national, 4, canary, &[]), o);
    // Pinned sites come first.
    let pin = inv.sites[1_234].id.as_str().to_string();
    assert_eq!(order(&inv, &national, 3, canary, &[pin])[0], 1_234);
    // A ministry scope orders that ministry's sites only.
    let m = inv.sites[0].ministry.clone();
    let scoped = order(&inv, &Scope::Ministry(m.clone()), 3, 2, &[]);
    assert_eq!(
        scoped.len(),
        inv.sites.iter().filter(|s| s.ministry == m).count()
    );
    assert!(scoped.iter().all(|&i| inv.sites[i].ministry == m));
}

#[test]
fn the_gate_releases_the_waves_sites_only() {
    let inv = inventory(40);
    let mut r = running(&inv, &params("5%", "50%,100%", "0%"));
    let (order, counts) = plan_of(&inv, &r).unwrap();
    assert_eq!(counts, vec![2, 20, 40]);
    let (_, g) = Gate::of(&inv, &r, &Releases::default()).unwrap();
    for (k, &i) in order.iter().enumerate() {
        assert_eq!(g.holds(9, i), k >= 2, "site {k} of the order");
        // Another version of the scope (a rollback's) is never held back.
        assert!(!g.holds(10, i));
    }
    r.wave = 1;
    let (_, g) = Gate::of(&inv, &r, &Releases::default()).unwrap();
    assert_eq!((0..40).filter(|&i| !g.holds(9, i)).count(), 20);
    r.state = RolloutState::Halted;
    let (_, g) = Gate::of(&inv, &r, &Releases::default()).unwrap();
    assert_eq!((0..40).filter(|&i| !g.holds(9, i)).count(), 20);
    // Preparing: every version after the previous one held back from every site.
    r.state = RolloutState::Preparing;
    let (_, g) = Gate::of(&inv, &r, &Releases::default()).unwrap();
    assert!((0..40).all(|i| g.holds(5, i) && g.holds(9, i) && !g.holds(4, i)));
    r.state = RolloutState::Done;
    assert!(Gate::of(&inv, &r, &Releases::default()).is_none());
}

fn status(site: &str, version: i64, state: &str, at: i64) -> StatusRow {
    StatusRow {
        site: site.into(),
        version,
        state: state.into(),
        reason: if state == "refused" {
            "no dns".into()
        } else {
            String::new()
        },
        updated_ms: at,
    }
}

fn view(state: Health, since: i64) -> SiteView {
    SiteView {
        state,
        state_since_ms: Some(since),
        live: crate::sites::SiteLive::default(),
        connected: true,
        clock_suspect: false,
    }
}

#[test]
fn progress_counts_each_wave_and_decide_halts_over_the_threshold() {
    let inv = inventory(40);
    let r = running(&inv, &params("5%", "50%,100%", "0%"));
    let (order, _) = plan_of(&inv, &r).unwrap();
    let id = |k: usize| inv.sites[order[k]].id.as_str().to_string();
    let mut views: Vec<SiteView> = (0..40).map(|_| view(Health::Up, 0)).collect();
    let mut statuses: HashMap<String, StatusRow> = HashMap::new();
    // Canary: both applied, up.
    statuses.insert(id(0), status(&id(0), 9, "applied", 2_000));
    statuses.insert(id(1), status(&id(1), 9, "applied", 2_000));
    // A site of the next wave already runs the previous plan (not released: not counted).
    statuses.insert(id(5), status(&id(5), 4, "applied", 500));
    let p = progress(&inv, &r, &plan_of(&inv, &r).unwrap(), &statuses, &views);
    assert_eq!(p.scope_sites, 40);
    assert_eq!(p.released, 2);
    assert_eq!(
        p.waves[0],
        WaveProgress {
            name: "canary".into(),
            sites: 2,
            released: true,
            applied: 2,
            ..WaveProgress::default()
        }
    );
    assert_eq!(
        (p.waves[1].sites, p.waves[1].released, p.waves[1].applied),
        (18, false, 0)
    );
    // Within the interval: nothing; after it: wave 1.
    assert_eq!(decide(&r, &p, 1_000 + 599_999), None);
    let next = decide(&r, &p, 1_000 + 600_000).unwrap();
    assert_eq!(
        (next.state, next.wave, next.wave_started_ms),
        (RolloutState::Running, 1, 601_000)
    );
    // A canary site down since before it applied the plan does not count; since after, it does.
    views[order[1]] = view(Health::Down, 1_500);
    assert_eq!(
        progress(&inv, &r, &plan_of(&inv, &r).unwrap(), &statuses, &views).bad,
        0
    );
    views[order[1]] = view(Health::Down, 2_500);
    let p = progress(&inv, &r, &plan_of(&inv, &r).unwrap(), &statuses, &views);
    assert_eq!((p.bad, p.refused, p.waves[0].applied), (1, 0, 1));
    assert_eq!(p.bad_sites[0].site, id(1));
    let halted = decide(&r, &p, 1_500).unwrap();
    assert_eq!(halted.state, RolloutState::Halted);
    assert!(
        halted.reason.starts_with(&format!(
            "halted in canary: 1 of 2 released sites refused the plan or turned degraded, down or silent after applying it (0 refused, 1 bad), over the 0% allowed: {} (down since ",
            id(1)
        )),
        "{}",
        halted.reason
    );
    // A halted rollout does not move by itself.
    assert_eq!(decide(&halted, &p, 10_000_000), None);
    // Refusals count too; 50% allowed: 1 of 2 is not over it.
    views[order[1]] = view(Health::Up, 2_500);
    statuses.insert(id(0), status(&id(0), 9, "refused", 2_000));
    let lenient = Rollout {
        max_bad_permille: 500,
        ..r.clone()
    };
    let p = progress(
        &inv,
        &lenient,
        &plan_of(&inv, &lenient).unwrap(),
        &statuses,
        &views,
    );
    assert_eq!((p.refused, p.bad), (1, 0));
    assert_eq!(decide(&lenient, &p, 1_500), None);
    // The last wave's interval over: done.
    let last = Rollout { wave: 2, ..lenient };
    assert_eq!(
        decide(&last, &p, 1_000 + 600_000).map(|r| r.state),
        Some(RolloutState::Done)
    );
}
