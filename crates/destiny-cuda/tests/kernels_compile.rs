//! Every kernel compiles with NVRTC to Hopper's machine code (sm_90). Needs no GPU, only libnvrtc (from
//! the `nvidia-cuda-nvrtc` wheel in CI); with `DESTINY_REQUIRE_NVRTC=1` a missing NVRTC
//! fails the test instead of skipping it. The sources are compiled as the backend compiles
//! them, after the header of codes generated from `codes.rs`, which they use by name.

use destiny_cuda::kernels::{compile_all, nvrtc_available, PROGRAMS};

#[test]
fn every_kernel_compiles_for_sm_90() {
    if !nvrtc_available() {
        assert!(
            std::env::var_os("DESTINY_REQUIRE_NVRTC").is_none(),
            "NVRTC is required but libnvrtc.so could not be loaded"
        );
        eprintln!("skipping: libnvrtc.so is not on this machine (scripts/test.sh installs it)");
        return;
    }
    let compiled = compile_all("sm_90", None).unwrap_or_else(|log| panic!("{log}"));
    assert_eq!(compiled.len(), PROGRAMS.len());
    for (compiled, listed) in compiled.iter().zip(PROGRAMS) {
        let name = compiled.program.name;
        assert_eq!(name, listed.name);
        for kernel in compiled.program.kernels {
            let kernel = kernel.name();
            assert!(
                compiled.defines(kernel),
                "{name}.cu does not define {kernel}"
            );
        }
        assert!(!compiled.defines("no_such_kernel"));
    }
}

/// The kernel cache: a second start reads what the first compiled, and a file that does not
/// hold its program's kernels is compiled again and replaced.
#[test]
fn compiled_kernels_are_kept_for_the_next_start() {
    if !nvrtc_available() {
        eprintln!("skipping: libnvrtc.so is not on this machine");
        return;
    }
    let temporary = tempfile::tempdir().unwrap();
    let folder = temporary.path().join("kernels");
    let first = compile_all("sm_90", Some(&folder)).unwrap_or_else(|log| panic!("{log}"));
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), PROGRAMS.len(), "{files:?}");
    // Marked files prove they are read; an emptied one is compiled again.
    for file in &files[1..] {
        let mut image = std::fs::read(file).unwrap();
        image.extend_from_slice(b"kept");
        std::fs::write(file, image).unwrap();
    }
    std::fs::write(&files[0], "").unwrap();
    let second = compile_all("sm_90", Some(&folder)).unwrap_or_else(|log| panic!("{log}"));
    let kept = second.iter().filter(|c| c.cubin.ends_with(b"kept")).count();
    assert_eq!(kept, PROGRAMS.len() - 1);
    assert!(std::fs::read(&files[0]).unwrap().starts_with(b"\x7fELF"));
    for (a, b) in first.iter().zip(&second) {
        assert!(b.cubin.starts_with(&a.cubin));
    }
}
