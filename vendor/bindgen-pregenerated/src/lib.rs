//! A stand-in for [bindgen](https://crates.io/crates/bindgen) 0.66.1 that serves exactly one
//! header: `pg_query.h` of the libpg_query that the `pg_query` crate embeds. Real bindgen needs
//! libclang at build time, which a fresh machine with only the Rust toolchain and a C compiler
//! does not have; pg_query's build script calls bindgen on a header that never changes for a
//! given pg_query version, so its output is generated once (`scripts/regen-pg-bindings`) and
//! committed here as `bindings.rs`, with the SHA-256 of the header it came from.
//!
//! The API is only what pg_query's `build.rs` calls:
//! `Builder::default().header(path).generate()?.write_to_file(out)?`. Given any other header
//! (a pg_query upgrade), `generate` fails and says how to regenerate.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The bindings real bindgen 0.66.1 generated from the header whose SHA-256 is [`HEADER_SHA256`].
const BINDINGS: &str = include_str!("../bindings.rs");

/// The SHA-256 (hex) of the header [`BINDINGS`] were generated from.
const HEADER_SHA256: &str = include_str!("../header.sha256");

/// The pointer width (bits) of the target the bindings were generated for.
const POINTER_WIDTH: &str = "64";

/// Builds bindings for one header, as bindgen's `Builder` does.
#[derive(Debug, Default, Clone)]
pub struct Builder {
    headers: Vec<String>,
}

impl Builder {
    /// Add a header to generate bindings for (only one is supported).
    pub fn header<T: Into<String>>(mut self, header: T) -> Builder {
        self.headers.push(header.into());
        self
    }

    /// The pre-generated bindings, if the header is the one they were generated from.
    pub fn generate(self) -> Result<Bindings, BindgenError> {
        let [header] = self.headers.as_slice() else {
            return Err(BindgenError(format!(
                "this bindgen stand-in serves exactly one header (pg_query.h), given {}",
                self.headers.len()
            )));
        };
        let bytes = std::fs::read(header)
            .map_err(|e| BindgenError(format!("cannot read header {header}: {e}")))?;
        let actual = hex(&Sha256::digest(&bytes));
        let expected = HEADER_SHA256.trim();
        if actual != expected {
            return Err(BindgenError(format!(
                "the pre-generated bindings in vendor/bindgen-pregenerated/bindings.rs were made from a pg_query.h with SHA-256 {expected}, but {header} has SHA-256 {actual} (pg_query was upgraded?); regenerate them with `scripts/regen-pg-bindings` (installs libclang-dev and runs real bindgen 0.66.1 on the new header)"
            )));
        }
        // Build scripts see the target's pointer width; the layouts in the bindings are 64-bit.
        if let Ok(width) = std::env::var("CARGO_CFG_TARGET_POINTER_WIDTH") {
            if width != POINTER_WIDTH {
                return Err(BindgenError(format!(
                    "the pre-generated pg_query bindings are for {POINTER_WIDTH}-bit targets, this target is {width}-bit; regenerate them with `scripts/regen-pg-bindings` on this target"
                )));
            }
        }
        Ok(Bindings)
    }
}

/// Why bindings could not be generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindgenError(String);

impl fmt::Display for BindgenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BindgenError {}

/// Generated bindings.
#[derive(Debug)]
pub struct Bindings;

impl Bindings {
    /// Write the bindings to `path`.
    pub fn write_to_file<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        std::fs::write(PathBuf::from(path.as_ref()), BINDINGS)
    }
}

impl fmt::Display for Bindings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(BINDINGS)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_header_is_refused_with_how_to_regenerate() {
        let dir = std::env::temp_dir().join(format!("bindgen-pregen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let h = dir.join("other.h");
        std::fs::write(&h, "int x;").unwrap();
        let e = Builder::default()
            .header(h.to_str().unwrap())
            .generate()
            .unwrap_err();
        assert!(e.to_string().contains("scripts/regen-pg-bindings"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
