use super::*;

fn truth(entries: &[(&str, &[&str])]) -> Truth {
    entries
        .iter()
        .map(|(user, items)| {
            (
                user.to_string(),
                items.iter().map(|i| i.to_string()).collect(),
            )
        })
        .collect()
}

fn recs(entries: &[(&str, &[&str])]) -> Recommendations {
    Recommendations {
        users: entries.iter().map(|(user, _)| user.to_string()).collect(),
        lists: entries
            .iter()
            .map(|(_, items)| items.iter().map(|i| (i.to_string(), 0.5)).collect())
            .collect(),
    }
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-12, "{a} vs {b}");
}

#[test]
fn users_without_recommendations_score_zero_and_others_are_ignored() {
    let truth = truth(&[("u1", &["a"]), ("u2", &["b"])]);
    let m =
        evaluate_recommendations(&truth, &recs(&[("u1", &["a"]), ("x", &["b"])]), &[1]).unwrap();
    // u1 hits at rank 1 (recall 1), u2 has no list (0): the mean is 1/2.
    assert_eq!(m[0].users, 2);
    close(m[0].recall, 0.5);
    close(m[0].precision, 0.5);
    assert_eq!(m[0].short_lists, 1, "u2's missing list is short");
}

#[test]
fn a_repeated_item_is_an_error_not_extra_hits() {
    let truth = truth(&[("u1", &["a", "b"])]);
    let error = evaluate_recommendations(&truth, &recs(&[("u1", &["a", "c", "a"])]), &[3])
        .unwrap_err()
        .to_string();
    assert_eq!(error, "data: user 'u1' has item 'a' at ranks 1 and 3");
    // Once each, the same items score one hit of two: recall@3 = 1/2.
    let m = evaluate_recommendations(&truth, &recs(&[("u1", &["a", "c"])]), &[3]).unwrap();
    close(m[0].recall, 0.5);
}

#[test]
fn a_list_shorter_than_k_is_counted() {
    let truth = truth(&[("u1", &["a", "b", "c"]), ("u2", &["d"])]);
    let recs = recs(&[("u1", &["a"]), ("u2", &["e", "d", "f"])]);
    let m = evaluate_recommendations(&truth, &recs, &[1, 3]).unwrap();
    // K = 1: u1 1/1, u2 0/1; no list is shorter than 1.
    close(m[0].recall, 0.5);
    assert_eq!(m[0].short_lists, 0);
    // K = 3: u1 1/min(3, 3), u2 1/min(3, 1); u1's single item is short of 3.
    close(m[1].recall, (1.0 / 3.0 + 1.0) / 2.0);
    assert_eq!(m[1].short_lists, 1);
}

#[test]
fn figures_that_would_mislead_are_errors() {
    let truth = truth(&[("u1", &["a"])]);
    let error = evaluate_recommendations(&truth, &recs(&[]), &[1]).unwrap_err();
    assert_eq!(error.to_string(), "data: there are no recommendations");
    let error = evaluate_recommendations(&truth, &recs(&[("u9", &["a"])]), &[1]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "data: none of the 1 users recommended for is among the 1 users of the truth"
    );
    let twice = recs(&[("u1", &["a"]), ("u1", &["b"])]);
    let error = evaluate_recommendations(&truth, &twice, &[1]).unwrap_err();
    assert_eq!(error.to_string(), "data: user 'u1' is listed twice");
    let error = evaluate_recommendations(&truth, &recs(&[("u1", &["a"])]), &[0]).unwrap_err();
    assert!(error.to_string().contains("at least 1"), "{error}");
}
