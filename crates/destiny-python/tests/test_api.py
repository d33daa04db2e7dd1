"""The Python API against the destiny command: same files, same models, same top-K."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

import destiny
from conftest import CONFIG, local_files, model_contents

SPLIT = dict(min_rating=3, min_user_interactions=3, split="heldout-users", test_users=10, seed=4)
CLI_SPLIT = ["--min-rating", 3, "--min-user-interactions", 3, "--split", "heldout-users",
             "--test-users", 10, "--seed", 4]


@pytest.fixture(scope="module")
def converted(tmp_path_factory, ratings, cli):
    """The ratings converted by the command and by Python, and a model trained by each."""
    root = tmp_path_factory.mktemp("api")
    code, _, err = cli("convert", "-i", ratings, *CLI_SPLIT, "--out-dir", root / "cli")
    assert code == 0, err
    written = destiny.convert(ratings, root / "py", **SPLIT)
    code, _, err = cli("train", "-c", CONFIG, "-i", root / "cli" / "train.arrow", "-n",
                       root / "cli" / "model.safetensors", "-e", 3, "-b", 32, "--device", "cpu")
    assert code == 0, err
    return root, written


def test_convert_writes_what_the_command_writes(converted, ratings, cli, tmp_path):
    root, written = converted
    cli_files = {k: v for k, v in local_files(root / "cli").items() if not k.startswith("model")}
    assert local_files(root / "py") == cli_files
    assert [w["file"] for w in written] == ["train.arrow", "test_input.arrow", "test_target.arrow"]
    # A split by time, with ratings kept as values, too.
    code, _, err = cli("convert", "-i", ratings, "--split", "time", "--keep-ratings",
                       "--holdout-fraction", 0.3, "--out-dir", tmp_path / "cli")
    assert code == 0, err
    destiny.convert(ratings, tmp_path / "py", split="time", keep_ratings=True, holdout_fraction=0.3)
    assert local_files(tmp_path / "py") == local_files(tmp_path / "cli")


def test_train_gives_the_command_s_model(converted, tmp_path):
    root, _ = converted
    events = []
    summary = destiny.train(CONFIG, root / "py" / "train.arrow", model=tmp_path / "m.safetensors",
                            epochs=3, batch_size=32, device="cpu", progress=events.append)
    assert model_contents(tmp_path / "m.safetensors") == model_contents(root / "cli" / "model.safetensors")
    assert summary["epochs_done"] == 3 and len(summary["epochs"]) == 3
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [0, 1, 2]
    assert any(e["event"] == "progress" for e in events)
    # A callback returning False stops the run after that epoch; resuming finishes it.
    stop = destiny.train(CONFIG, root / "py" / "train.arrow", model=tmp_path / "r.safetensors",
                         epochs=3, batch_size=32, device="cpu",
                         progress=lambda e: e["event"] != "epoch")
    assert stop["stopped_early"] and stop["epochs_done"] == 1
    resumed = destiny.train(CONFIG, root / "py" / "train.arrow", model=tmp_path / "r.safetensors",
                            epochs=3, batch_size=32, device="cpu", resume=True, progress=False)
    assert resumed["first_epoch"] == 1
    assert model_contents(tmp_path / "r.safetensors") == model_contents(root / "cli" / "model.safetensors")


def test_predict_matches_the_command_row_for_row(converted, cli, tmp_path):
    root, _ = converted
    folder = root / "cli"
    code, _, err = cli("predict", "-n", folder / "model.safetensors", "-r", folder / "test_input.arrow",
                       "-k", 7, "-s", tmp_path / "recs.parquet", "--device", "cpu")
    assert code == 0, err
    expected = pq.read_table(tmp_path / "recs.parquet")
    model = destiny.Model.load(folder / "model.safetensors", features=folder / "features.idx", device="cpu")
    batch = ipc.open_file(folder / "test_input.arrow").read_all()
    top = model.predict(batch, 7)
    assert isinstance(top, pa.RecordBatch)
    # One long form: the command's Parquet holds the very batch the package returns.
    assert pa.table(top).equals(expected)
    # NumPy: the same columns and scores, one row per user.
    items, scores = model.predict(batch.to_batches()[0], 7, output="numpy")
    assert items.shape == scores.shape == (batch.num_rows, 7)
    features = model.features
    assert [features[c] for c in items[0]] == expected.column("item").to_pylist()[:7]
    np.testing.assert_array_equal(scores.ravel(), expected.column("score").to_numpy())
    # Keeping what users have changes the lists: their own items come back.
    seen = model.predict(batch, 7, exclude_seen=False)
    assert seen.column("item").to_pylist() != top.column("item").to_pylist()


def test_evaluate_matches_the_command(converted, cli, tmp_path):
    root, _ = converted
    folder = root / "cli"
    cli("predict", "-n", folder / "model.safetensors", "-r", folder / "test_input.arrow",
        "-k", 20, "-s", tmp_path / "recs.txt", "--device", "cpu")
    code, out, err = cli("evaluate", "--truth", folder / "test_target.arrow", "--recs",
                         tmp_path / "recs.txt", "--k", "5,10", "--json")
    assert code == 0, err
    expected = json.loads(out)[0]["metrics"]
    model = destiny.Model.load(folder / "model.safetensors", device="cpu")
    table = model.predict(ipc.open_file(folder / "test_input.arrow").read_all(), 20)
    rows = destiny.evaluate(folder / "test_target.arrow", [tmp_path / "recs.txt", table],
                            labels=["file", "arrow"], k=[5, 10], plot=tmp_path / "m.png")
    for label in ("file", "arrow"):
        got = [{k: r[k] for k in expected[0]} for r in rows if r["system"] == label]
        assert got == expected
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


def test_errors_carry_the_command_s_messages(converted, cli, tmp_path):
    root, _ = converted
    missing = tmp_path / "missing.csv"
    code, _, err = cli("convert", "-i", missing, "--out-dir", tmp_path / "o")
    with pytest.raises(destiny.DestinyError) as raised:
        destiny.convert(missing, tmp_path / "o")
    assert code != 0 and str(raised.value) in err
    with pytest.raises(destiny.DestinyError, match="unknown split 'halves'"):
        destiny.convert(missing, tmp_path / "o", split="halves")
    with pytest.raises(destiny.DestinyError, match="unknown optimizer 'adamw'"):
        destiny.train(CONFIG, root / "py" / "train.arrow", model=tmp_path / "m", optimizer="adamw")
    with pytest.raises(destiny.DestinyError, match="not a complete safetensors file"):
        destiny.Model.load(root / "py" / "features.idx")
    model = destiny.Model.load(root / "cli" / "model.safetensors", device="cpu")
    wide = pa.table({"user": ["a"], "indices": pa.array([[0, model.input_width]], pa.list_(pa.int32()))})
    with pytest.raises(destiny.DestinyError, match=f"has column {model.input_width} but the width is"):
        model.predict(wide, 5)
    with pytest.raises(destiny.DestinyError, match="no 'indices' column"):
        model.predict(pa.table({"user": ["a"]}), 5)


def test_model_files_are_kept_safe_and_settings_checked(converted, tmp_path):
    root, _ = converted
    data = root / "py" / "train.arrow"
    model = tmp_path / "kept.safetensors"
    run = dict(epochs=1, batch_size=32, device="cpu", progress=False)
    with pytest.raises(destiny.DestinyError, match="there is no model file .* to resume"):
        destiny.train(CONFIG, data, model=model, resume=True, **run)
    destiny.train(CONFIG, data, model=model, **run)
    trained = model.read_bytes()
    with pytest.raises(destiny.DestinyError, match="already exists: resume it"):
        destiny.train(CONFIG, data, model=model, **run)
    assert model.read_bytes() == trained
    assert destiny.train(CONFIG, data, model=model, overwrite=True, **run)["epochs_done"] == 1
    for bad, message in [(dict(learning_rate=-1.0), "learning rate"), (dict(learning_rate=float("nan")), "learning rate"),
                         (dict(denoising=2.0), "denoising"), (dict(epochs=0), "epochs"), (dict(batch_size=0), "batch size"),
                         (dict(on_nonfinite="ignore"), "'stop' or 'skip-batch', not 'ignore'")]:
        with pytest.raises(destiny.DestinyError, match=message):
            destiny.train(CONFIG, data, model=tmp_path / "never.safetensors", **{**run, **bad})
    assert not (tmp_path / "never.safetensors").exists()
    with pytest.raises(destiny.DestinyError, match="one label per set"):
        destiny.evaluate(root / "cli" / "test_target.arrow", [tmp_path / "x.txt"], labels=["a", "b"])
