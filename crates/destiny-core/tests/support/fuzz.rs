//! What the fuzz tests of destiny-core, destiny-data and destiny-eval share (each includes
//! this file as a module): the number of cases, and damaged copies of valid input.

#![allow(dead_code)] // each fuzz test uses a part

use proptest::test_runner::Config as ProptestConfig;

/// PROPTEST_CASES cases (64 when unset: a second or so, for CI), no failure files.
pub fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// `valid` with bytes overwritten at some positions and cut at `keep` (a share of its length).
pub fn damaged(valid: &[u8], edits: &[(usize, u8)], keep: f64) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    for &(at, byte) in edits {
        let at = at % bytes.len();
        bytes[at] = byte;
    }
    bytes.truncate((bytes.len() as f64 * keep).ceil() as usize);
    bytes
}
