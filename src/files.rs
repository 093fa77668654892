//! Reading the user's files: regular files only, with a size cap. A FIFO would block the read
//! forever, a character device such as `/dev/zero` (or a symlink to it) would be read until
//! memory runs out, and a directory is not a file: each is refused with an error that says
//! what the path is instead.

use std::io::{self, Read};
use std::path::Path;

/// Largest migration file read (a data migration may be large, but not this large).
pub const MIGRATION_CAP: u64 = 64 * 1024 * 1024;
/// Largest YAML file read (inventory, plan, releases).
pub const YAML_CAP: u64 = 16 * 1024 * 1024;
/// Largest password file read.
pub const PASSWORD_CAP: u64 = 64 * 1024;

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

fn refuse(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

/// The bytes of the regular file at `path` (symlinks are followed to what they name), at
/// most `cap` of them.
pub fn read_regular_bytes(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    // Check before opening: opening a FIFO for reading blocks until a writer appears.
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(refuse(format!(
            "it is {}; flotilla reads regular files only",
            kind_of(&meta)
        )));
    }
    let file = std::fs::File::open(path)?;
    // And again on what was opened, in case the path changed in between.
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refuse(format!(
            "it is {}; flotilla reads regular files only",
            kind_of(&meta)
        )));
    }
    if meta.len() > cap {
        return Err(too_large(cap));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(too_large(cap));
    }
    Ok(bytes)
}

fn too_large(cap: u64) -> io::Error {
    refuse(format!(
        "it is larger than {} MiB, the most flotilla reads from one file",
        cap as f64 / (1024.0 * 1024.0)
    ))
}

/// The text of the regular file at `path`, at most `cap` bytes, which must be UTF-8.
pub fn read_regular(path: &Path, cap: u64) -> io::Result<String> {
    let bytes = read_regular_bytes(path, cap)?;
    String::from_utf8(bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "it is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_directories_and_oversized_files_are_refused() {
        let err = read_regular(Path::new("/dev/zero"), 1024).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let err = read_regular(dir.path(), 1024).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
        let link = dir.path().join("zero.sql");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let err = read_regular(&link, 1024).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
        let big = dir.path().join("big.sql");
        std::fs::write(&big, vec![b'x'; 2048]).unwrap();
        let err = read_regular(&big, 1024).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
        std::fs::write(&big, b"SELECT 1;").unwrap();
        assert_eq!(read_regular(&big, 1024).unwrap(), "SELECT 1;");
        std::fs::write(&big, [0xff, 0xfe]).unwrap();
        assert!(read_regular(&big, 1024)
            .unwrap_err()
            .to_string()
            .contains("UTF-8"));
    }
}
