//! Links the `fleche` binary without position independence on Linux (x86-64 and aarch64, GNU
//! toolchain): a cached command's hit is a whole process start, and skipping the dynamic
//! relocation of the binary saves about a quarter of a millisecond per run. Build with
//! `FLECHE_PIE=1` to keep a position-independent executable (address randomization of the
//! binary itself).

fn main() {
    println!("cargo:rerun-if-env-changed=FLECHE_PIE");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let keep_pie = std::env::var_os("FLECHE_PIE").is_some_and(|v| !v.is_empty() && v != "0");
    if os == "linux" && env == "gnu" && matches!(arch.as_str(), "x86_64" | "aarch64") && !keep_pie {
        println!("cargo:rustc-link-arg-bin=fleche=-no-pie");
    }
}
