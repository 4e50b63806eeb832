//! Gives the cdylib the SONAME `libllmpool.so.<major>` on ELF targets, as
//! distributions ship shared libraries: a program linked against
//! `libllmpool.so` records `libllmpool.so.0` and takes any compatible
//! upgrade (`libllmpool.so.0.x.y`) installed under that name.
//!
//! Because such a program then looks for `libllmpool.so.0` at run time, this
//! script also leaves the link `libllmpool.so.0 -> libllmpool.so` in the
//! profile directory and its `deps/` (dangling until the library is linked),
//! so binaries linked against the build tree (`-Ltarget/release -lllmpool`
//! with an rpath or `LD_LIBRARY_PATH`) keep running. `scripts/install.sh`
//! installs the same names into a prefix.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let elf = !matches!(os.as_str(), "macos" | "ios" | "windows");
    if !elf {
        return;
    }
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    let soname = format!("libllmpool.so.{major}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");

    // OUT_DIR is <profile>/build/llmpool-<hash>/out.
    let Some(out_dir) = std::env::var_os("OUT_DIR") else {
        return;
    };
    let Some(profile) = Path::new(&out_dir).ancestors().nth(3) else {
        return;
    };
    #[cfg(unix)]
    for dir in [profile.to_path_buf(), profile.join("deps")] {
        let link = dir.join(&soname);
        if std::fs::symlink_metadata(&link).is_err() && dir.is_dir() {
            // Best effort: a read-only or shared target dir just lacks it.
            let _ = std::os::unix::fs::symlink("libllmpool.so", &link);
        }
    }
}
