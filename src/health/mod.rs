//! Health measurements and the statistics and gate that judge them.

pub mod gate;
pub mod probes;
pub mod stats;
pub mod workload;
