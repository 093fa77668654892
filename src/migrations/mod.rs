//! The migration catalog: versioned up/down scripts, their checksums and the releases they form.

pub mod catalog;
pub mod error;
pub mod layout;

pub use catalog::{Catalog, CatalogError, Catalogs, Migration, Mode, Reversibility, Script};
pub use layout::Layout;
pub mod lint;
pub mod roundtrip;
pub mod split;
pub mod version;
