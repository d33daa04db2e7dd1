//! The faults of `docs/faults.md` that the command shows: output paths, model files kept
//! safe, settings checked before any work, and an evaluation that cannot be fooled.

mod common;

use common::{config, destiny, destiny_output, path, write_ratings};
use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Converts the made-up ratings into `dir/data` (10 test users) and returns that folder.
fn converted(dir: &Path) -> String {
    let data = path(dir, "data");
    let ratings = write_ratings(dir);
    let (ok, out) = destiny(&[
        "convert",
        "-i",
        &ratings,
        "--split",
        "heldout-users",
        "--test-users",
        "10",
        "--out-dir",
        &data,
    ]);
    assert!(ok, "{out}");
    data
}

/// `destiny train` on `data` into `model` with `extra` flags, of one epoch in batches of 16
/// unless `extra` says otherwise.
fn train(data: &str, model: &str, extra: &[&str]) -> (bool, String) {
    let (input, config) = (format!("{data}/train.arrow"), config());
    let mut args = vec!["train", "-c", &config, "-i", &input, "-n", model];
    for (flag, default) in [("-e", "1"), ("-b", "16")] {
        if !extra.contains(&flag) {
            args.extend([flag, default]);
        }
    }
    args.extend(extra);
    destiny(&args)
}

fn predict_args<'a>(model: &'a str, input: &'a str, output: &'a str) -> Vec<&'a str> {
    vec!["predict", "-n", model, "-r", input, "-k", "3", "-s", output]
}

#[test]
fn outputs_follow_the_conventions_of_unix_tools() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    let data = converted(dir);
    let model = path(dir, "m.safetensors");
    let (ok, out) = train(&data, &model, &[]);
    assert!(ok, "{out}");
    let input = format!("{data}/test_input.arrow");

    // `-` is standard output.
    let output = destiny_output(&predict_args(&model, &input, "-"));
    assert!(output.status.success());
    let recs = String::from_utf8(output.stdout).unwrap();
    assert_eq!(recs.lines().count(), 10, "{recs}");
    assert!(!dir.join("-").exists());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("to standard output"), "{said}");

    // A full device: an error naming it, exit non-zero, and the device is still a device.
    let (ok, out) = destiny(&predict_args(&model, &input, "/dev/full"));
    assert!(
        !ok && out.contains("/dev/full: No space left on device"),
        "{out}"
    );
    let kind = std::fs::metadata("/dev/full").unwrap().file_type();
    assert!(kind.is_char_device());
    let (ok, out) = destiny(&[
        "convert",
        "-d",
        "gl_input",
        "-i",
        &path(dir, "ratings.csv"),
        "-o",
        "/dev/full",
        "-f",
        &path(dir, "f.idx"),
        "-s",
        &path(dir, "s.idx"),
        "-c",
    ]);
    assert!(!ok && out.contains("/dev/full"), "{out}");
    assert!(std::fs::metadata("/dev/full")
        .unwrap()
        .file_type()
        .is_char_device());

    // A symbolic link is followed: its target is replaced, the link stays.
    std::fs::write(dir.join("real.recs"), "old").unwrap();
    std::os::unix::fs::symlink("real.recs", dir.join("link.recs")).unwrap();
    let (ok, out) = destiny(&predict_args(&model, &input, &path(dir, "link.recs")));
    assert!(ok, "{out}");
    let link = std::fs::symlink_metadata(dir.join("link.recs")).unwrap();
    assert!(link.file_type().is_symlink());
    let real = std::fs::read_to_string(dir.join("real.recs")).unwrap();
    assert_eq!(real, recs);

    // A closed pipe is an error, not a silent success.
    let mut child = Command::new(env!("CARGO_BIN_EXE_destiny"))
        .args(predict_args(&model, &input, "-"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && said.contains("-: Broken pipe"),
        "{said}"
    );

    // The OS error is printed once.
    let (ok, out) = destiny(&predict_args(&path(dir, "missing"), &input, "-"));
    assert!(!ok && out.matches("os error 2").count() == 1, "{out}");
    assert!(out.matches("missing").count() == 1, "the path once: {out}");

    // `-` is standard input: the same recommendations from a pipe as from the file (with
    // the feature index named, as nothing lies beside a pipe).
    let features = format!("{data}/features.idx");
    let mut child = Command::new(env!("CARGO_BIN_EXE_destiny"))
        .args(predict_args(&model, "-", "-"))
        .args(["-o", &features])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&std::fs::read(&input).unwrap()).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8(output.stdout).unwrap(), recs);
    // Read once only: a second `-` is an error, not an empty input.
    let mut twice = predict_args(&model, "-", "-");
    twice.extend(["-f", "-"]);
    let (ok, out) = destiny(&twice);
    assert!(
        !ok && out.contains("standard input (-) can be read once"),
        "{out}"
    );
}

#[test]
fn model_files_are_kept_safe() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    let data = converted(dir);
    let model = path(dir, "m.safetensors");
    let (ok, out) = train(&data, &model, &["--resume"]);
    assert!(!ok && out.contains("there is no model file"), "{out}");
    let (ok, out) = train(&data, &model, &[]);
    assert!(ok, "{out}");
    let trained = std::fs::read(&model).unwrap();
    let (ok, out) = train(&data, &model, &[]);
    assert!(
        !ok && out.contains("already exists: resume it (--resume) or replace it (--overwrite)"),
        "{out}"
    );
    assert_eq!(std::fs::read(&model).unwrap(), trained);
    let (ok, out) = train(&data, &model, &["--resume", "--overwrite"]);
    assert!(!ok && out.contains("cannot be used with"), "{out}");
    // A run on a model that another run holds stops at once.
    let lock = destiny_core::lock::FileLock::acquire(Path::new(&model)).unwrap();
    let (ok, out) = train(&data, &model, &["--overwrite"]);
    assert!(!ok && out.contains("in use by another run"), "{out}");
    drop(lock);
    assert_eq!(std::fs::read(&model).unwrap(), trained);
    let (ok, out) = train(&data, &model, &["--overwrite", "-e", "2"]);
    assert!(ok && out.contains("epoch 2/2"), "{out}");
    let (ok, out) = train(&data, &model, &["--resume", "-e", "1"]);
    assert!(
        !ok && out.contains("has trained 2 epochs already, more than the 1 asked for"),
        "{out}"
    );
    let (ok, out) = train(&data, &model, &["--resume", "-e", "2"]);
    assert!(ok && out.contains("nothing to do"), "{out}");
    // A missing folder fails before the first epoch.
    let (ok, out) = train(&data, &path(dir, "missing/m.safetensors"), &[]);
    assert!(
        !ok && out.contains("missing/m.safetensors: No such file") && !out.contains("epoch 1"),
        "{out}"
    );
}

#[test]
fn settings_are_checked_before_any_work() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    let data = converted(dir);
    let model = path(dir, "m.safetensors");
    for (flags, named) in [
        (&["--learning-rate=-1"][..], "--learning-rate"),
        (&["--learning-rate", "NaN"], "--learning-rate"),
        (&["--denoising", "2"], "--denoising"),
        (&["--denoising=-0.5"], "--denoising"),
        (&["-e", "0"], "--epochs"),
        (&["-b", "0"], "--batch-size"),
        (&["--l2", "inf"], "--l2"),
        (&["--momentum", "1"], "--momentum"),
        (&["--on-nonfinite", "ignore"], "--on-nonfinite"),
        (&["--checkpoint-every", "0m"], "--checkpoint-every"),
    ] {
        let (ok, out) = train(&data, &model, flags);
        assert!(
            !ok && out.contains(&format!("for '{named}")) && !out.contains("network definition"),
            "{flags:?}: {out}"
        );
        assert!(!Path::new(&model).exists());
    }
    let (ok, out) = destiny(&[
        "convert",
        "-i",
        &path(dir, "ratings.csv"),
        "--min-rating",
        "NaN",
        "--out-dir",
        &path(dir, "other"),
    ]);
    assert!(!ok && out.contains("'--min-rating"), "{out}");
    assert!(!dir.join("other").exists());
}

#[test]
fn evaluate_cannot_be_fooled() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    std::fs::write(dir.join("truth.txt"), "u1\ta:b\nu2\tc\n").unwrap();
    let evaluate = |recs: &str, extra: &[&str]| {
        std::fs::write(dir.join("recs.txt"), recs).unwrap();
        let mut args = vec![
            "evaluate",
            "--truth",
            dir.join("truth.txt").to_str().unwrap(),
            "--recs",
            dir.join("recs.txt").to_str().unwrap(),
            "--k",
            "1,2",
            "--json",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        args.extend(extra.iter().map(|s| s.to_string()));
        destiny(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (ok, out) = evaluate("u1\ta,0.9:a,0.8\nu2\tc,1\n", &[]);
    assert!(
        !ok && out.contains("recs.txt") && out.contains("user 'u1' has item 'a' at ranks 1 and 2"),
        "{out}"
    );
    let (ok, out) = evaluate("u1\ta,0.9\nu1\tb,0.8\n", &[]);
    assert!(!ok && out.contains("user 'u1' is listed twice"), "{out}");
    let (ok, out) = evaluate("", &[]);
    assert!(!ok && out.contains("there are no recommendations"), "{out}");
    let (ok, out) = evaluate("u9\ta,1\n", &[]);
    assert!(!ok && out.contains("none of the 1 users"), "{out}");
    let (ok, out) = evaluate("u1\ta,1\n", &["--label", "x", "--label", "y"]);
    assert!(
        !ok && out.contains("one label per recommendation file"),
        "{out}"
    );
    // u1: a at rank 1 of {a, b}; u2: no list. Recall@1 = (1 + 0) / 2, recall@2 =
    // (1/2 + 0) / 2, and both users' lists are short of 2.
    let (ok, out) = evaluate("u1\ta,1\n", &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("2 of 2 users have fewer than 2 recommendations"),
        "{out}"
    );
    let json = &out[out.find('[').unwrap()..=out.rfind(']').unwrap()];
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    let metrics = &value[0]["metrics"];
    assert_eq!(metrics[0]["recall"], 0.5);
    assert_eq!(metrics[1]["recall"], 0.25);
    assert_eq!(metrics[1]["short_lists"], 2);
}

#[test]
fn a_run_killed_during_training_resumes_from_a_complete_model_file() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    let data = converted(dir);
    let model = path(dir, "m.safetensors");
    let input = format!("{data}/train.arrow");
    let mut child = Command::new(env!("CARGO_BIN_EXE_destiny"))
        .args([
            "train",
            "-c",
            &config(),
            "-i",
            &input,
            "-n",
            &model,
            "-e",
            "100000",
            "-b",
            "4",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !Path::new(&model).exists() {
        assert!(
            started.elapsed().as_secs() < 60,
            "no checkpoint was written"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // SIGKILL while checkpoints are being written, one after every epoch.
    std::thread::sleep(std::time::Duration::from_millis(100));
    child.kill().unwrap();
    child.wait().unwrap();
    let done = destiny_core::model_file::load_model(Path::new(&model))
        .expect("the model file is complete")
        .training
        .epochs_done;
    assert!(done >= 1);
    // The dead run's lock is gone with it: the next run resumes at once.
    let epochs = (done + 1).to_string();
    let (ok, out) = train(&data, &model, &["--resume", "-e", &epochs, "-b", "4"]);
    assert!(
        ok && out.contains(&format!("resuming {model} after epoch {done}")),
        "{out}"
    );
}

/// A linear autoencoder with the squared error, whose loss a huge rating overflows.
const LINEAR: &str = r#"{
    "Version": 0.8, "Name": "linear", "Kind": "FeedForward", "ErrorFunction": "L2",
    "Layers": [
        { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "gl_input", "Sparse": true },
        { "Name": "Hidden", "Kind": "Hidden", "N": 8, "Activation": "Linear" },
        { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "gl_output", "Activation": "Linear", "Sparse": true }
    ]
}"#;

#[test]
fn a_batch_whose_loss_overflows_stops_the_run_or_is_skipped() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    let mut ratings = String::from("user,item,rating\n");
    for u in 0..48 {
        let rating = if u == 20 { "1e30" } else { "1" };
        ratings += &format!("u{u},i{},{rating}\nu{u},i{},1\n", u % 20, (u * 7 + 3) % 20);
    }
    std::fs::write(dir.join("ratings.csv"), ratings).unwrap();
    std::fs::write(dir.join("linear.json"), LINEAR).unwrap();
    let data = path(dir, "data");
    let (ok, out) = destiny(&[
        "convert",
        "-i",
        &path(dir, "ratings.csv"),
        "--keep-ratings",
        "--out-dir",
        &data,
    ]);
    assert!(ok, "{out}");
    let model = path(dir, "m.safetensors");
    let run = |extra: &[&str]| {
        let (config, input) = (path(dir, "linear.json"), format!("{data}/data.arrow"));
        let mut args = vec!["train", "-c", &config, "-i", &input, "-n", &model];
        args.extend(["-e", "2", "-b", "16", "--optimizer", "sgd", "--overwrite"]);
        args.extend(extra);
        destiny(&args)
    };
    let (ok, out) = run(&[]);
    assert!(
        !ok && out.contains("the loss became") && out.contains("in epoch 1, batches 1 to 3 of 3"),
        "{out}"
    );
    assert!(!Path::new(&model).exists());
    let (ok, out) = run(&["--on-nonfinite", "skip-batch"]);
    assert!(ok, "{out}");
    assert_eq!(
        out.matches("(1 batches skipped: loss not finite)").count(),
        2,
        "{out}"
    );
    let trained = destiny_core::model_file::load_model(Path::new(&model)).unwrap();
    assert_eq!(trained.training.epochs_done, 2);
}

/// Runs `script` (sh, with the folder to mount as $1) in a mount namespace of its own with a
/// tmpfs of `size` mounted on `mount`; `None` where this machine allows neither (a container
/// without user namespaces).
fn on_a_small_tmpfs(mount: &Path, size: &str, script: &str) -> Option<std::process::Output> {
    let script = format!("mount -t tmpfs -o size={size} tmpfs \"$1\" || exit 77\n{script}");
    let output = Command::new("unshare")
        .args(["-rm", "sh", "-c", &script, "sh"])
        .arg(mount)
        .output()
        .ok()?;
    (output.status.code() != Some(77) && output.status.code().is_some()).then_some(output)
}

#[test]
fn a_full_disk_during_training_stops_it_and_keeps_the_last_checkpoint() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    let data = converted(dir);
    let (mount, kept) = (dir.join("small"), dir.join("kept"));
    std::fs::create_dir_all(&mount).unwrap();
    std::fs::create_dir_all(&kept).unwrap();
    // The model file takes 53,776 bytes: an 80 KiB tmpfs holds one, not a second beside it
    // (the next checkpoint's temporary file). What was on the tmpfs is copied out before the
    // namespace, and the tmpfs with it, goes.
    let script = format!(
        "'{destiny}' train -c '{config}' -i '{data}/train.arrow' -n \"$1/m.safetensors\" \
         -e 3 -b 16 2>'{kept}/stderr'; echo $? >'{kept}/status'; ls -A \"$1\" >'{kept}/listing'; \
         cp \"$1/m.safetensors\" '{kept}/'",
        destiny = env!("CARGO_BIN_EXE_destiny"),
        config = config(),
        kept = kept.display(),
    );
    let Some(output) = on_a_small_tmpfs(&mount, "80k", &script) else {
        eprintln!("skipped: this machine cannot mount a tmpfs in a user namespace (unshare -rm)");
        return;
    };
    assert!(output.status.success(), "{output:?}");
    let read = |name: &str| std::fs::read_to_string(kept.join(name)).unwrap();
    assert_eq!(read("status").trim(), "1");
    let stderr = read("stderr");
    assert!(
        stderr.contains("m.safetensors: I/O error: No space left on device"),
        "{stderr}"
    );
    // No temporary file is left, and the model file is the last complete checkpoint.
    assert_eq!(read("listing").trim(), "m.safetensors");
    let model = destiny_core::model_file::load_model(&kept.join("m.safetensors")).unwrap();
    assert_eq!(model.training.epochs_done, 1);
}
