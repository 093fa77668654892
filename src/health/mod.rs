//! Health measurements and the statistics and gate that judge them.

pub mod gate;
pub mod probes;
pub mod samples;
pub mod sequential;
pub mod slots;
pub mod stats;
pub mod workload;
