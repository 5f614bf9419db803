//! What the collector benches share: the generated national inventory (14,000 sites, seed 1)
//! and one simulated probe per site.

use std::path::Path;
use std::sync::Arc;

use rie_collector::inventory::{self, GenerateOptions, Inventory};
use rie_flow::simulate::{SimulateConfig, Simulator};
use rie_proto::LinkRole;

pub fn national(dir: &Path) -> (Arc<Inventory>, Vec<Simulator>) {
    inventory::generate(&GenerateOptions::new(14_000, 1), &dir.join("inv")).expect("generate");
    let inv = Arc::new(inventory::load_dir(&dir.join("inv")).expect("load"));
    let sims = inv
        .sites
        .iter()
        .map(|s| {
            let links: Vec<_> = inv.links_of(&s.id).collect();
            Simulator::new(SimulateConfig {
                seed: 1,
                agents: s.agents,
                primary_link: links
                    .iter()
                    .find(|l| l.role == LinkRole::Primary)
                    .expect("primary")
                    .id
                    .clone(),
                backup_link: links
                    .iter()
                    .find(|l| l.role == LinkRole::Backup)
                    .map(|l| l.id.clone()),
                rtt_ms: 15.0,
                incident_rate: 0.0,
            })
        })
        .collect();
    (inv, sims)
}
