// Release builds keep line tables for flotilla's own code (Cargo.toml, [profile.release]) so a
// panic's backtrace names src/ file and line; the linker compresses those DWARF sections
// (SHF_COMPRESSED, zlib), which the standard library's backtrace and addr2line decompress.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PROFILE");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if release && linux {
        println!("cargo:rustc-link-arg-bins=-Wl,--compress-debug-sections=zlib");
    }
}
