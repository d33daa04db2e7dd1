//! Arbitrary input for the recommendations reader and the truth reader: a value or an
//! error, never a panic. The number of cases is PROPTEST_CASES (64 when unset, for CI).

use destiny_eval::{evaluate_recommendations, read_recommendations, read_truth};
use proptest::prelude::*;

#[path = "../../destiny-core/tests/support/fuzz.rs"]
mod support;
use support::config;

fn recs_like() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        "[a-c]{1,2}",
        Just("0.5".to_string()),
        Just("NaN".to_string()),
        Just("\t".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("\n".to_string()),
    ];
    prop::collection::vec(token, 0..60).prop_map(|tokens| tokens.concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("fuzzed.recs");
        std::fs::write(&path, &bytes).unwrap();
        let _ = read_recommendations(&path);
        let _ = read_truth(&path, None);
    }

    #[test]
    fn recommendations_scored_against_themselves(text in recs_like(), k in 0usize..5) {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("fuzzed.recs");
        std::fs::write(&path, &text).unwrap();
        if let (Ok(recs), Ok(truth)) = (read_recommendations(&path), read_truth(&path, None)) {
            if let Ok(metrics) = evaluate_recommendations(&truth, &recs, &[k.max(1)]) {
                for m in metrics {
                    prop_assert!((0.0..=1.0).contains(&m.recall), "{m:?}");
                    prop_assert!((0.0..=1.0).contains(&m.ndcg), "{m:?}");
                    prop_assert!((0.0..=1.0).contains(&m.precision), "{m:?}");
                    prop_assert!((0.0..=1.0).contains(&m.map), "{m:?}");
                }
            }
        }
    }
}
