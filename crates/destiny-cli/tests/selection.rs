//! Choices made on validation users, never on test users: `destiny convert` keeps the two
//! apart, and `destiny tune`, `train --validation` and `baseline --validation` read no test
//! file (their results do not change when the test files are garbage).

use destiny_data::read_dataset;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

fn destiny(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_destiny"))
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "destiny {args:?}: {text}");
    text
}

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    path.join(name).join("config.json").display().to_string()
}

/// Users of two tastes, converted with 12 test and 12 validation users.
fn converted(dir: &Path) -> String {
    let mut text = String::from("user,item,rating\n");
    for u in 0..90 {
        for i in 0..10 {
            if (u + i) % 4 != 0 {
                text += &format!("u{u},i{},5\n", if u % 2 == 0 { i } else { 10 + i });
            }
        }
    }
    std::fs::write(dir.join("ratings.csv"), text).unwrap();
    let data = dir.join("data").display().to_string();
    destiny(&[
        "convert",
        "-i",
        &dir.join("ratings.csv").display().to_string(),
        "--split",
        "heldout-users",
        "--test-users",
        "12",
        "--validation-users",
        "12",
        "--seed",
        "4",
        "--out-dir",
        &data,
    ]);
    data
}

fn samples(data: &str, name: &str) -> HashSet<String> {
    let file = read_dataset(&Path::new(data).join(name)).unwrap();
    file.samples.into_iter().collect()
}

/// Every trial of `tune` as written, without its time.
fn trials(out: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(out).join("trials.json")).unwrap();
    let mut trials: Vec<Value> = serde_json::from_str(&text).unwrap();
    for trial in &mut trials {
        trial.as_object_mut().unwrap().remove("seconds");
    }
    trials
}

#[test]
fn validation_and_test_users_are_apart_and_choices_read_no_test_file() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    let data = converted(dir);
    let (train, validation, test) = (
        samples(&data, "train.arrow"),
        samples(&data, "validation_input.arrow"),
        samples(&data, "test_input.arrow"),
    );
    assert_eq!((validation.len(), test.len(), train.len()), (12, 12, 66));
    assert!(validation.is_disjoint(&test));
    assert!(validation.is_disjoint(&train) && test.is_disjoint(&train));
    assert_eq!(validation, samples(&data, "validation_target.arrow"));

    let tune = |out: &str| {
        destiny(&[
            "tune",
            "-c",
            &example("mult-dae"),
            "-c",
            &example("movielens"),
            "--data",
            &data,
            "--out-dir",
            out,
            "--hidden",
            "16",
            "--learning-rates",
            "0.01",
            "-e",
            "6",
            "--patience",
            "2",
            "-b",
            "16",
            "--device",
            "cpu",
        ])
    };
    let baseline = || {
        destiny(&[
            "baseline",
            "--kind",
            "ease",
            "--train",
            &format!("{data}/train.arrow"),
            "-i",
            &format!("{data}/validation_input.arrow"),
            "--validation",
            &data,
            "-s",
            &dir.join("ease.recs").display().to_string(),
        ])
    };
    let first = dir.join("first").display().to_string();
    let table = tune(&first);
    assert!(
        table.contains("Mult-DAE") && table.contains("chose trial"),
        "{table}"
    );
    let chose = baseline();
    assert!(chose.contains("chose EASE"), "{chose}");
    // The chosen model holds its trial's best epoch, and says so.
    let best: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&first).join("best.json")).unwrap(),
    )
    .unwrap();
    let info = destiny(&["info", &format!("{first}/model.safetensors")]);
    let line = format!("validation   epoch {} of", best["best_epoch"]);
    assert!(info.contains(&line), "{info}");
    // The chosen definition trains as it is.
    let config = std::fs::read_to_string(Path::new(&first).join("config.json")).unwrap();
    assert!(config.contains("16"), "{config}");

    // With the test files replaced by garbage, every choice is the same.
    for name in ["test_input.arrow", "test_target.arrow", "test.samples.idx"] {
        std::fs::write(Path::new(&data).join(name), "not a dataset").unwrap();
    }
    let second = dir.join("second").display().to_string();
    tune(&second);
    assert_eq!(trials(&first), trials(&second));
    assert_eq!(baseline(), chose);
}

#[test]
fn a_trial_that_diverges_is_reported_and_the_others_chosen_from() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    let data = converted(dir);
    let out = dir.join("tuned").display().to_string();
    let tune = |learning_rates: &str| {
        Command::new(env!("CARGO_BIN_EXE_destiny"))
            .args([
                "tune",
                "-c",
                &example("movielens"),
                "--data",
                &data,
                "--out-dir",
                &out,
            ])
            .args(["--learning-rates", learning_rates, "-e", "3", "-b", "16"])
            .args(["--device", "cpu"])
            .output()
            .unwrap()
    };
    // A learning rate of 1e38 overflows the weights in the first epoch.
    let output = tune("0.01,1e38");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{table}");
    assert!(
        table.contains("diverged: ") && table.contains("chose trial 0"),
        "{table}"
    );
    let trials: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tuned/trials.json")).unwrap())
            .unwrap();
    assert!(trials[0]["ndcg_at_100"].is_number() && trials[0].get("diverged").is_none());
    assert!(trials[1]["diverged"]
        .as_str()
        .unwrap()
        .contains("NaN or infinite"));
    let output = tune("1e38");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && said.contains("every trial diverged"),
        "{said}"
    );
}
