//! Reporters: consumers of the engine's [`Event`](crate::engine::Event) stream.

pub mod human;
pub mod jsonl;

pub use human::Human;
pub use jsonl::JsonLines;
