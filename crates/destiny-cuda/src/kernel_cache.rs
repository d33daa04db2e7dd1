//! Compiled kernels kept on disk between runs: NVRTC takes a second or more to compile
//! every program, which every command paid at start-up (a whole `predict` takes little more).
//! A program's machine code is stored under a name made of a hash of everything that shapes it (its
//! source, NVRTC's options, this crate's version), so an edited kernel or another GPU
//! architecture simply misses; files are written atomically, and one that is unreadable or
//! does not hold the program's kernels is compiled again.

use crate::kernels::{self, Program};
use destiny_core::atomic;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// Where compiled kernels are kept: `$DESTINY_KERNEL_CACHE` (empty turns the cache off),
/// else `$XDG_CACHE_HOME/destiny/kernels`, else `$HOME/.cache/destiny/kernels`.
pub fn folder() -> Option<PathBuf> {
    let variable = |name| std::env::var_os(name).map(PathBuf::from);
    match variable("DESTINY_KERNEL_CACHE") {
        Some(path) if path.as_os_str().is_empty() => None,
        Some(path) => Some(path),
        None => variable("XDG_CACHE_HOME")
            .or_else(|| variable("HOME").map(|home| home.join(".cache")))
            .map(|cache| cache.join("destiny").join("kernels")),
    }
}

/// The file that holds `program`'s machine code compiled from `source` with `options`.
pub fn file(folder: &Path, program: &Program, source: &str, options: &[String]) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    (source, options, env!("CARGO_PKG_VERSION")).hash(&mut hasher);
    folder.join(format!("{}-{:016x}.cubin", program.name, hasher.finish()))
}

/// The machine code in `path`, if it is there and defines `program`'s kernels (the
/// architecture is in the name's hash, with the options).
pub fn read(path: &Path, program: &Program) -> Option<Vec<u8>> {
    let cubin = std::fs::read(path).ok()?;
    let complete = program
        .kernels
        .iter()
        .all(|k| kernels::defines(&cubin, k.name()));
    complete.then_some(cubin)
}

/// Stores `cubin` in `path`; a cache that cannot be written costs only the next compile.
pub fn write(path: &Path, cubin: &[u8]) {
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = atomic::write_path(path, |temporary| {
        std::fs::write(temporary, cubin).map_err(|e| destiny_core::error::Error::io(path, e))
    });
}
