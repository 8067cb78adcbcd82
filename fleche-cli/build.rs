//! Chooses how the `fleche` binary is linked. A cached command's hit is a whole process start,
//! and on Linux most of a short process's life goes to the dynamic loader: mapping libc, libm
//! and libgcc_s, binding their symbols, running libgcc_s's CPU detection.
//!
//! `FLECHE_LINK` (read at build time) picks one of:
//!
//! - `static` (the default on Linux with glibc, when the toolchain has glibc's static archives):
//!   a static position-independent executable. No loader runs; the binary relocates itself and
//!   keeps its address randomization. The one lookup in the system's databases fleche may make,
//!   the user's home directory when `HOME` is unset, reads `/etc/passwd` with glibc's built-in
//!   `files` source; other sources (LDAP, systemd's) need the glibc it was built with.
//! - `static-no-pie`: static and at a fixed address, which skips the self-relocation (about a
//!   tenth of a millisecond per start) at the cost of the binary's address randomization.
//! - `dynamic`: the toolchain's default, a dynamically linked position-independent executable
//!   (also what any other platform, a cross build, or a toolchain without static archives gets).
//!
//! Static linking works by handing the linker glibc's archives where Rust's standard library
//! asks for shared libraries: a directory in `OUT_DIR` holds `libc.a`, `libm.a`, … (scripts
//! naming the toolchain's archives) and a `libgcc_s.a` naming `libgcc_eh.a` (the unwinder) and
//! `libgcc.a`. Only the `fleche` binary searches it, so this package's tests and benchmarks
//! link as usual.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=FLECHE_LINK");
    println!("cargo:rerun-if-changed=build.rs");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let gnu_linux = var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && matches!(var("CARGO_CFG_TARGET_ARCH").as_str(), "x86_64" | "aarch64");
    let requested = var("FLECHE_LINK");
    let pie = match requested.as_str() {
        "" | "static" => true,
        "static-no-pie" => false,
        "dynamic" => return,
        other => {
            println!(
                "cargo:warning=FLECHE_LINK={other} is not one of static, static-no-pie, dynamic: \
                 linking dynamically"
            );
            return;
        }
    };
    // Only a native build can use the compiler's archives: a cross build would get the host's.
    if !gnu_linux || var("TARGET") != var("HOST") {
        return;
    }
    match static_archives(Path::new(&var("OUT_DIR"))) {
        Ok(dir) => {
            println!("cargo:rustc-link-arg-bin=fleche=-L{}", dir.display());
            if pie {
                println!("cargo:rustc-link-arg-bin=fleche=-static-pie");
            } else {
                println!("cargo:rustc-link-arg-bin=fleche=-no-pie");
                println!("cargo:rustc-link-arg-bin=fleche=-static");
            }
        }
        // Said only when asked for: a toolchain without static archives is no error.
        Err(why) if !requested.is_empty() => {
            println!("cargo:warning=FLECHE_LINK={requested}: {why}; linking dynamically");
        }
        Err(_) => {}
    }
}

/// Makes the directory of archives the linker finds in place of the shared libraries Rust's
/// standard library names, or says why it cannot.
fn static_archives(out: &Path) -> Result<PathBuf, String> {
    let dir = out.join("static-libs");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let find = |name: &str| -> Option<PathBuf> {
        let out = Command::new(&compiler)
            .arg(format!("-print-file-name={name}"))
            .output()
            .ok()?;
        let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
        // The compiler echoes a bare name back when it has no such file.
        (out.status.success() && path.is_absolute() && path.exists())
            .then(|| path.canonicalize().unwrap_or(path))
    };
    let required = |name: &str| find(name).ok_or_else(|| format!("{compiler} has no {name}"));
    let unwinder = required("libgcc_eh.a")?;
    let runtime = required("libgcc.a")?;
    let mut libs = vec![("libc.a", required("libc.a")?)];
    // glibc 2.34 and later keep these inside libc; older ones ship them apart.
    for name in ["libm.a", "libpthread.a", "librt.a", "libdl.a", "libutil.a"] {
        match find(name) {
            Some(path) => libs.push((name, path)),
            None if name == "libm.a" => return Err(format!("{compiler} has no {name}")),
            None => libs.push((name, PathBuf::new())),
        }
    }
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    // Linker scripts rather than symbolic links: nothing to replace on a rebuild.
    write(
        "libgcc_s.a",
        format!("GROUP ( {} {} )\n", unwinder.display(), runtime.display()),
    )?;
    for (name, path) in libs {
        if path.as_os_str().is_empty() {
            // An empty archive: `-lrt` and friends need something to find.
            write(name, "!<arch>\n".to_owned())?;
        } else if name == "libc.a" {
            // libc and the unwinder need each other: a group, for linkers that read archives
            // once, in order (GNU ld), as Rust's own static linking does with `-lc -lgcc_eh -lc`.
            write(
                name,
                format!(
                    "GROUP ( {} {} {} )\n",
                    path.display(),
                    unwinder.display(),
                    runtime.display()
                ),
            )?;
        } else {
            write(name, format!("INPUT ( {} )\n", path.display()))?;
        }
    }
    Ok(dir)
}
