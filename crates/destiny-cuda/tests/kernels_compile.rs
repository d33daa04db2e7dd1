//! Every kernel compiles with NVRTC for Hopper (sm_90). Needs no GPU, only libnvrtc (from
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
    let compiled = compile_all("sm_90").unwrap_or_else(|log| panic!("{log}"));
    assert_eq!(compiled.len(), PROGRAMS.len());
    for ((program, ptx), listed) in compiled.iter().zip(PROGRAMS) {
        let name = program.name;
        assert_eq!(name, listed.name);
        let text = ptx.to_src();
        for kernel in program.kernels {
            let kernel = kernel.name();
            assert!(
                text.contains(&format!(".entry {kernel}(")),
                "{name}.cu does not define {kernel}"
            );
        }
        assert!(
            text.contains(".target sm_90"),
            "{name}.cu was not compiled for sm_90"
        );
    }
}
