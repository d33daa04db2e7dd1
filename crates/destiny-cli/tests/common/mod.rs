//! What the command-line tests share: running `destiny`, and a small made-up dataset.

#![allow(dead_code)] // each test file uses a part

use std::path::Path;
use std::process::{Command, Output};

/// Runs `destiny` with `args`.
pub fn destiny_output(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_destiny"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs `destiny` with `args`: whether it succeeded, and its stdout and stderr together.
pub fn destiny(args: &[&str]) -> (bool, String) {
    let output = destiny_output(args);
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// `folder/name` as a string argument.
pub fn path(folder: &Path, name: &str) -> String {
    folder.join(name).to_string_lossy().into_owned()
}

/// DSSTNE's MovieLens autoencoder definition.
pub fn config() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/movielens/config.json")
        .to_string_lossy()
        .into_owned()
}

/// Writes `ratings.csv` into `folder`: 60 users in two groups liking two blocks of items.
pub fn write_ratings(folder: &Path) -> String {
    let mut text = String::from("user,item,rating\n");
    for u in 0..60 {
        for i in 0..8 {
            if (u + i) % 4 != 0 {
                text += &format!("user {u},item {},5\n", if u % 2 == 0 { i } else { 8 + i });
            }
        }
    }
    std::fs::write(folder.join("ratings.csv"), text).unwrap();
    path(folder, "ratings.csv")
}
