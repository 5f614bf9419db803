//! rie-plan: central check plans (see `docs/plans.md`).
//!
//! A plan says, per link role (primary, backup), which availability checks run (ICMP, TCP
//! connect, DNS, HTTP(S)), towards which targets, how often, with which timeout, and the loss,
//! latency and jitter thresholds past which a link is degraded. Plans are TOML files, stored by
//! the collector per scope (national, ministry, département, site) and merged value by value
//! into each site's effective plan, which the collector pushes to the probe.
//!
//! Owns:
//! - `checks`: the check-config types the probe's own file (`[checks]`) and a plan share
//!   ([`ChecksConfig`], [`TargetConfig`]), and the parsing of a target ([`Target`]), so that a
//!   plan and the local file mean the same thing and are validated by the same code;
//! - `file`: a plan file as written ([`PlanFile`], every value optional) and its pure
//!   validation, with errors that name the key and a right value ([`PlanError`]);
//! - `scope`: where a plan applies ([`Scope`]);
//! - `effective`: merging layers into a site's [`EffectivePlan`], with the scope each value
//!   came from, its wire text and content hash.
//!
//! May import `rie-proto` (check kinds, link roles) and external crates; no I/O, no runtime.

pub mod checks;
pub mod effective;
pub mod file;
pub mod scope;

pub use checks::{ChecksConfig, Target, TargetConfig, Url};
pub use effective::{content_hash, EffectivePlan, Layer, RolePlan, Thresholds};
pub use file::{PlanError, PlanFile, RoleLayer};
pub use scope::Scope;
