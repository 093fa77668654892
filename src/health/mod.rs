//! Health measurements and the statistics that judge them.

pub mod stats;
