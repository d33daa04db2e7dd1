//! The `destiny` command end to end on a small made-up dataset, and its errors.

mod common;

use common::{config, destiny, path, write_ratings};
use std::path::Path;
use std::process::Command;

#[test]
fn convert_train_predict_evaluate() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    let ratings = write_ratings(dir);
    let config = config();
    let data = path(dir, "data");
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
    assert!(out.contains("train.arrow") && out.contains("50"), "{out}");
    let model = path(dir, "model.safetensors");
    let (ok, out) = destiny(&[
        "train",
        "-c",
        &config,
        "-i",
        &format!("{data}/train.arrow"),
        "-n",
        &model,
        "-e",
        "3",
        "-b",
        "16",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("epoch 3/3"), "{out}");
    // Resuming a finished run trains the missing epochs only.
    let (ok, out) = destiny(&[
        "train",
        "-c",
        &config,
        "-i",
        &format!("{data}/train.arrow"),
        "-n",
        &model,
        "-e",
        "4",
        "-b",
        "16",
        "--resume",
    ]);
    assert!(
        ok && out.contains("resuming") && out.contains("epoch 4/4") && !out.contains("epoch 3/4"),
        "{out}"
    );
    let recs = path(dir, "recs.txt");
    let (ok, out) = destiny(&[
        "predict",
        "-n",
        &model,
        "-r",
        &format!("{data}/test_input.arrow"),
        "-k",
        "3",
        "-s",
        &recs,
    ]);
    assert!(ok, "{out}");
    let written = std::fs::read_to_string(&recs).unwrap();
    assert_eq!(written.lines().count(), 10);
    assert!(
        written
            .lines()
            .all(|l| l.starts_with("user ") && l.split(':').count() == 3),
        "{written}"
    );
    let (ok, out) = destiny(&[
        "evaluate",
        "--recs",
        &recs,
        "--truth",
        &format!("{data}/test_target.arrow"),
        "--k",
        "1,3",
        "--json",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("\"recall\""), "{out}");
    let (ok, out) = destiny(&["info", &model]);
    assert!(
        ok && out.contains("weights.Input.Hidden") && out.contains("4 epochs"),
        "{out}"
    );
    // An inference export predicts the same recommendations, byte for byte.
    let export = path(dir, "model.infer.safetensors");
    let (ok, out) = destiny(&["export", "-n", &model, "-o", &export]);
    assert!(ok, "{out}");
    let (ok, out) = destiny(&["info", &export]);
    assert!(
        ok && out.contains("inference export") && out.contains("4 epochs"),
        "{out}"
    );
    let exported_recs = path(dir, "exported.txt");
    let input = format!("{data}/test_input.arrow");
    // The same from the export; `-d` takes the input dataset's name or, as in DSSTNE's
    // predict, its prefix.
    for dataset in [None, Some("gl"), Some("gl_input"), Some("other")] {
        let mut args = vec![
            "predict",
            "-n",
            &export,
            "-r",
            &input,
            "-k",
            "3",
            "-s",
            &exported_recs,
        ];
        args.extend(dataset.into_iter().flat_map(|d| ["-d", d]));
        let (ok, out) = destiny(&args);
        if dataset == Some("other") {
            assert!(
                !ok && out.contains("-d other: the model's datasets are gl_input"),
                "{out}"
            );
        } else {
            assert!(ok, "{dataset:?}: {out}");
            assert_eq!(std::fs::read_to_string(&exported_recs).unwrap(), written);
        }
    }
    let (ok, out) = destiny(&[
        "export",
        "-n",
        &path(dir, "absent.safetensors"),
        "-o",
        &export,
    ]);
    assert!(!ok && out.contains("absent.safetensors"), "{out}");
}

#[test]
fn errors_are_clear_and_leave_no_output() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    std::fs::write(
        dir.join("bad.csv"),
        "user,item,rating\nu1,i1,5\nu2,i2,lots\n",
    )
    .unwrap();
    let (ok, out) = destiny(&[
        "convert",
        "-i",
        &path(dir, "bad.csv"),
        "--out-dir",
        &path(dir, "out"),
    ]);
    assert!(
        !ok && out.contains("bad.csv:3:") && out.contains("'lots'"),
        "{out}"
    );
    assert!(!dir.join("out/data.arrow").exists());
    std::fs::write(dir.join("empty.csv"), "").unwrap();
    let (ok, out) = destiny(&[
        "convert",
        "-i",
        &path(dir, "empty.csv"),
        "--out-dir",
        &path(dir, "out"),
    ]);
    assert!(!ok && out.contains("empty"), "{out}");
    let (ok, out) = destiny(&[
        "predict",
        "-n",
        &path(dir, "missing.safetensors"),
        "-r",
        &path(dir, "bad.csv"),
        "-s",
        &path(dir, "r"),
    ]);
    assert!(!ok && out.contains("missing.safetensors"), "{out}");
    let (ok, out) = destiny(&[
        "train",
        "-c",
        &path(dir, "bad.csv"),
        "-i",
        &path(dir, "x"),
        "-n",
        &path(dir, "m"),
    ]);
    assert!(!ok && out.contains("error"), "{out}");
    let (ok, out) = destiny(&["train", "--device", "tpu", "-c", "x", "-n", "m"]);
    assert!(!ok && out.contains("unknown device 'tpu'"), "{out}");
}

/// `destiny train` of the MovieLens autoencoder on `data` for `epochs` into `model`.
fn train_command(data: &str, model: &str, epochs: usize, resume: bool) -> Command {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/movielens/config.json");
    let mut command = Command::new(env!("CARGO_BIN_EXE_destiny"));
    command.args([
        "train", "--device", "cpu", "-b", "16", "-i", data, "-n", model,
    ]);
    command
        .arg("-c")
        .arg(config)
        .args(["-e", &epochs.to_string()]);
    if resume {
        command.arg("--resume");
    }
    command
}

#[test]
fn a_killed_training_resumes_exactly() {
    use destiny_core::model_file::load_model;
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    let mut text = String::new();
    for u in 0..400 {
        for i in 0..25 {
            text += &format!("u{u}\ti{}\n", (u * 7 + i * 13) % 800);
        }
    }
    std::fs::write(dir.join("ratings.tsv"), text).unwrap();
    let (ok, out) = destiny(&[
        "convert",
        "-i",
        &path(dir, "ratings.tsv"),
        "--out-dir",
        &path(dir, "data"),
    ]);
    assert!(ok, "{out}");
    let data = path(dir, "data/data.arrow");
    let epochs = 12;
    let straight = path(dir, "straight.safetensors");
    let status = train_command(&data, &straight, epochs, false)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    // Killed (SIGKILL) as soon as its first checkpoint is on disk, maybe while it writes the
    // next one; the resumed run ends with the same numbers.
    let killed = path(dir, "killed.safetensors");
    let mut child = train_command(&data, &killed, epochs, false)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while !Path::new(&killed).exists() {
        assert!(child.try_wait().unwrap().is_none(), "it ended first");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = load_model(Path::new(&killed)).unwrap().training.epochs_done;
    assert!(
        (1..epochs).contains(&at_kill),
        "killed after {at_kill} epochs"
    );
    let status = train_command(&data, &killed, epochs, true)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let (a, b) = (
        load_model(Path::new(&straight)).unwrap(),
        load_model(Path::new(&killed)).unwrap(),
    );
    assert_eq!(a.training, b.training);
    assert_eq!(a.parameters, b.parameters);
    assert_eq!(a.optimizer_state, b.optimizer_state);
}

#[test]
fn info_shows_the_error_function_its_boost_and_normalised_inputs() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    let ratings = write_ratings(dir);
    let data = path(dir, "data");
    let (ok, out) = destiny(&["convert", "-i", &ratings, "--out-dir", &data]);
    assert!(ok, "{out}");
    let definition = r#"{ "Version": 0.8, "Name": "boosted", "ErrorFunction": "CrossEntropy",
        "DeltaBoost": { "one": 3, "zero": 0.5 },
        "Layers": [
            { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "gl_input", "Sparse": true, "Normalize": true },
            { "Name": "Hidden", "Kind": "Hidden", "N": 4, "Activation": "Tanh" },
            { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "gl_output", "Activation": "Sigmoid", "Sparse": true } ] }"#;
    std::fs::write(dir.join("boosted.json"), definition).unwrap();
    let model = path(dir, "m.safetensors");
    let (ok, out) = destiny(&[
        "train",
        "-c",
        &path(dir, "boosted.json"),
        "-i",
        &format!("{data}/data.arrow"),
        "-n",
        &model,
        "-e",
        "1",
    ]);
    assert!(ok, "{out}");
    let (ok, info) = destiny(&["info", &model]);
    assert!(ok, "{info}");
    assert!(
        info.contains("error        CrossEntropy, DeltaBoost one 3 zero 0.5"),
        "{info}"
    );
    assert!(
        info.contains("Input 16 units, Linear, rows normalised"),
        "{info}"
    );
}

/// DSSTNE's NetCDF datasets (a file written in its layout by the netCDF4 Python package).
#[cfg(feature = "netcdf")]
#[test]
fn a_dsstne_netcdf_file_converts_into_datasets() {
    use destiny_core::data::{Rows, SparseRows};
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../destiny-data/tests/netcdf/dsstne.nc")
        .display()
        .to_string();
    let samples = path(dir, "samples");
    std::fs::write(&samples, "u0\t0\nu1\t1\nu2\t2\nu3\t3\n").unwrap();
    let out = path(dir, "data");
    let (ok, said) = destiny(&["convert", "-i", &file, "-s", &samples, "--out-dir", &out]);
    assert!(ok, "{said}");
    assert!(
        said.contains("ratings.arrow                  4         4             6"),
        "{said}"
    );
    assert!(
        said.contains("the datasets are {3, 4, 5} wide, so no features.idx"),
        "{said}"
    );
    let ratings = destiny_data::read_dataset(&dir.join("data/ratings.arrow")).unwrap();
    assert_eq!(ratings.samples, ["u0", "u1", "u2", "u3"]);
    let (a, b) = (vec![(1, 4.0), (2, 2.5)], vec![(0, 5.0)]);
    let expected = SparseRows::from_rows(4, &[b.clone(), a.clone(), a, b]).unwrap();
    assert_eq!(ratings.dataset.rows, Rows::Sparse(expected));
    // A dense dataset is kept as its non-zero values.
    let dense = destiny_data::read_dataset(&dir.join("data/dense.arrow")).unwrap();
    let expected = SparseRows::from_rows(3, &[vec![(0, 0.5), (2, 1.5)], vec![(0, 2.0), (1, 1.0)]]);
    assert_eq!(dense.dataset.rows, Rows::Sparse(expected.unwrap()));
    let (ok, said) = destiny(&[
        "convert",
        "-i",
        &file,
        "--split",
        "heldout-users",
        "--out-dir",
        &out,
    ]);
    assert!(!ok && said.contains("without --split"), "{said}");
    // Training reads the file's dataset that the layers name, as DSSTNE's train does.
    let definition = std::fs::read_to_string(config()).unwrap();
    let autoencoder = path(dir, "autoencoder.json");
    std::fs::write(&autoencoder, definition.replace("gl_output", "gl_input")).unwrap();
    let model = path(dir, "m.safetensors");
    let (ok, said) = destiny(&[
        "train",
        "-c",
        &autoencoder,
        "-i",
        &file,
        "-n",
        &model,
        "-e",
        "1",
    ]);
    assert!(ok && said.contains("3 samples"), "{said}");
    let named = path(dir, "named.json");
    std::fs::write(&named, definition.replace("gl_input", "other")).unwrap();
    let (ok, said) = destiny(&[
        "train",
        "-c",
        &named,
        "-i",
        &file,
        "-n",
        &path(dir, "n.safetensors"),
    ]);
    assert!(
        !ok && said.contains("no dataset 'other' (it holds gl_input, ratings, dense)"),
        "{said}"
    );
}

/// DSSTNE's image datasets (dense, with a width, height and channels) convert into image
/// datasets that keep their dimensions, and a convolutional network trains on them, from the
/// NetCDF file or from the converted files.
#[cfg(feature = "netcdf")]
#[test]
fn a_convolutional_network_trains_on_dsstne_images() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../destiny-data/tests/netcdf/images.nc")
        .display()
        .to_string();
    let out = path(dir, "data");
    let (ok, said) = destiny(&["convert", "-i", &file, "--out-dir", &out]);
    assert!(ok, "{said}");
    let (ok, said) = destiny(&["info", &path(dir, "data/input.arrow")]);
    assert!(ok && said.contains("dimensions   [5, 4, 2]"), "{said}");
    let definition = path(dir, "cnn.json");
    std::fs::write(
        &definition,
        r#"{ "Name": "cnn", "Kind": "FeedForward", "ErrorFunction": "CrossEntropy",
             "Layers": [
               { "Name": "Input", "Kind": "Input", "Type": "Convolutional", "N": "auto", "DataSet": "input" },
               { "Name": "C", "Kind": "Hidden", "Type": "Convolutional", "N": 4, "Kernel": [3, 3], "Activation": "Relu" },
               { "Name": "P", "Kind": "Hidden", "Type": "Pooling", "Function": "Max", "Kernel": [2, 2], "KernelStride": [2, 2] },
               { "Name": "F", "Kind": "Hidden", "N": 6, "BatchNormalization": true, "Activation": "Relu" },
               { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output", "Activation": "SoftMax" } ] }"#,
    )
    .unwrap();
    let (ok, said) = destiny(&["info", &definition]);
    assert!(ok, "{said}");
    for line in [
        "C            Hidden Auto convolution of 4 filters 3x3 stride 1x1 RectifiedLinear",
        "P            Hidden Auto Max pooling 2x2 stride 2x2 Linear",
        "F            Hidden Fixed(6) RectifiedLinear batch normalised",
    ] {
        assert!(said.contains(line), "{line}\n{said}");
    }
    let model = path(dir, "m.safetensors");
    let (ok, said) = destiny(&[
        "train",
        "-c",
        &definition,
        "-i",
        &file,
        "-n",
        &model,
        "-e",
        "2",
        "-b",
        "4",
    ]);
    assert!(ok && said.contains("6 samples"), "{said}");
    let (ok, said) = destiny(&["info", &model]);
    assert!(ok, "{said}");
    for line in [
        "C            Hidden 80 units [5, 4, 4], convolution 3x3 stride 1x1 padding 1x1",
        "P            Hidden 16 units [2, 2, 4], Max pooling 2x2 stride 2x2 padding 0x0",
        "F            Hidden 6 units, RectifiedLinear, batch normalised",
        "tensor running_variance.F",
    ] {
        assert!(said.contains(line), "{line}\n{said}");
    }
    // Resuming is exact: the running statistics and the optimizer state come back whole.
    let straight = path(dir, "straight.safetensors");
    let resumed = path(dir, "resumed.safetensors");
    for (model, epochs, resume) in [
        (&straight, "3", false),
        (&resumed, "1", false),
        (&resumed, "3", true),
    ] {
        let mut args = vec![
            "train",
            "-c",
            &definition,
            "-i",
            &file,
            "-n",
            model,
            "-e",
            epochs,
            "-b",
            "4",
        ];
        if resume {
            args.push("--resume");
        }
        let (ok, said) = destiny(&args);
        assert!(ok, "{said}");
    }
    let load = |p: &str| destiny_core::model_file::load_model(Path::new(p)).unwrap();
    let (a, b) = (load(&straight), load(&resumed));
    assert_eq!(a.parameters, b.parameters);
    assert_eq!(a.optimizer_state, b.optimizer_state);
    // The two likeliest classes of each image, normalised with the running statistics.
    let classes = path(dir, "classes.idx");
    std::fs::write(&classes, "airplane\t0\nbird\t1\ncat\t2\n").unwrap();
    let recs = path(dir, "classes.txt");
    let (ok, said) = destiny(&[
        "predict",
        "-n",
        &model,
        "-r",
        &path(dir, "data/input.arrow"),
        "-o",
        &classes,
        "-k",
        "2",
        "-s",
        &recs,
    ]);
    assert!(ok, "{said}");
    let written = std::fs::read_to_string(&recs).unwrap();
    assert_eq!(written.lines().count(), 6, "{written}");
    let two_classes = |l: &str| {
        l.split_once('\t')
            .is_some_and(|(_, r)| r.split(':').count() == 2)
    };
    assert!(written.lines().all(two_classes), "{written}");
    let (input, output) = (
        path(dir, "data/input.arrow"),
        path(dir, "data/output.arrow"),
    );
    let (ok, said) = destiny(&[
        "train",
        "-c",
        &definition,
        "--data",
        &format!("input={input}"),
        "--data",
        &format!("output={output}"),
        "-n",
        &path(dir, "n.safetensors"),
        "-e",
        "1",
    ]);
    assert!(ok && said.contains("6 samples"), "{said}");
}

/// Without the `netcdf` feature a NetCDF input says how to build a destiny that reads it.
#[cfg(not(feature = "netcdf"))]
#[test]
fn a_netcdf_input_without_the_feature_says_how_to_get_it() {
    let folder = tempfile::tempdir().unwrap();
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../destiny-data/tests/netcdf/dsstne.nc")
        .display()
        .to_string();
    let (ok, said) = destiny(&[
        "convert",
        "-i",
        &file,
        "--out-dir",
        &path(folder.path(), "d"),
    ]);
    assert!(!ok && said.contains("--features netcdf"), "{said}");
}
