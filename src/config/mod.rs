//! The files the user writes: the estate (`trusts.yaml`) and rollout plans (`plans/*.yaml`),
//! parsed into YAML models and resolved into typed, validated configuration.

mod error;
pub mod health;
pub mod inventory;
pub mod plan;
mod positions;
pub mod probe_safety;
pub mod workload;
pub(crate) mod yaml;

pub use error::ConfigError;
pub use inventory::{DatabaseTarget, Inventory, Trust};
pub use plan::{Plan, Target, Wave};
