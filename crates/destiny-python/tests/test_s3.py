"""Every path as an s3:// object, through a real S3-compatible server on the loopback
address (moto's server): the command and the Python API read and write the same bytes as
they do with local files, and a killed upload leaves no object behind."""

import logging
import random
import re
import signal
import subprocess
import time

import pyarrow.ipc as ipc
import pytest

import destiny
from conftest import BUCKET, CONFIG, _destiny_binary, local_files, model_contents, objects

SPLIT = ["--min-user-interactions", 3, "--split", "heldout-users", "--test-users", 10,
         "--validation-users", 8, "--seed", 4]


def test_the_command_reads_and_writes_objects_as_files(s3, ratings, cli, tmp_path):
    s3.upload_file(str(ratings), BUCKET, "raw/ratings.csv")
    code, _, err = cli("convert", "-i", ratings, *SPLIT, "--out-dir", tmp_path / "data")
    assert code == 0, err
    code, _, err = cli("convert", "-i", f"s3://{BUCKET}/raw/ratings.csv", *SPLIT,
                       "--out-dir", f"s3://{BUCKET}/data")
    assert code == 0, err
    assert objects(s3, "data") == local_files(tmp_path / "data")

    train = ["-c", CONFIG, "-e", 3, "-b", 32, "--device", "cpu"]
    code, _, err = cli("train", *train, "-i", tmp_path / "data" / "train.arrow",
                       "--validation", tmp_path / "data", "-n", tmp_path / "m.safetensors")
    assert code == 0, err
    remote_model = f"s3://{BUCKET}/models/m.safetensors"
    code, _, err = cli("train", *train, "-i", f"s3://{BUCKET}/data/train.arrow",
                       "--validation", f"s3://{BUCKET}/data", "-n", remote_model)
    assert code == 0, err
    s3.download_file(BUCKET, "models/m.safetensors", str(tmp_path / "remote.safetensors"))
    assert model_contents(tmp_path / "remote.safetensors") == model_contents(tmp_path / "m.safetensors")
    # An object is a model file like any other: kept unless replaced on purpose, resumed.
    code, _, err = cli("train", *train, "-i", f"s3://{BUCKET}/data/train.arrow", "-n", remote_model)
    assert code != 0 and f"{remote_model} already exists: resume it" in err
    code, _, err = cli("train", *train, "-i", f"s3://{BUCKET}/data/train.arrow", "-n",
                       f"s3://{BUCKET}/models/absent.safetensors", "--resume")
    assert code != 0 and "there is no model file s3://destiny/models/absent.safetensors" in err

    for model, data, recs in [
        (tmp_path / "m.safetensors", tmp_path / "data", tmp_path / "recs.txt"),
        (remote_model, f"s3://{BUCKET}/data", f"s3://{BUCKET}/recs/recs.txt"),
    ]:
        code, _, err = cli("predict", "-n", model, "-r", f"{data}/test_input.arrow", "-k", 20,
                           "-s", recs, "--device", "cpu")
        assert code == 0, err
    assert objects(s3, "recs") == {"recs.txt": (tmp_path / "recs.txt").read_bytes()}

    outputs = []
    for data, recs, plot in [
        (tmp_path / "data", tmp_path / "recs.txt", tmp_path / "plot.png"),
        (f"s3://{BUCKET}/data", f"s3://{BUCKET}/recs/recs.txt", f"s3://{BUCKET}/plots/plot.png"),
    ]:
        code, out, err = cli("evaluate", "--truth", f"{data}/test_target.arrow", "--recs", recs,
                             "--k", "5,20", "--json", "--plot", plot)
        assert code == 0, err
        outputs.append(out)
    assert outputs[0] == outputs[1]
    assert objects(s3, "plots")["plot.png"][:4] == b"\x89PNG"

    code, _, err = cli("info", f"s3://{BUCKET}/models/missing.safetensors")
    assert code != 0 and "s3://destiny/models/missing.safetensors" in err


def test_the_package_reads_and_writes_objects(s3, ratings, tmp_path):
    s3.upload_file(str(ratings), BUCKET, "py/ratings.csv")
    split = dict(min_user_interactions=3, split="heldout-users", test_users=10, seed=4)
    destiny.convert(ratings, tmp_path / "data", **split)
    destiny.convert(f"s3://{BUCKET}/py/ratings.csv", f"s3://{BUCKET}/py/data", **split)
    assert objects(s3, "py/data") == local_files(tmp_path / "data")

    run = dict(epochs=2, batch_size=32, device="cpu", progress=False)
    destiny.train(CONFIG, tmp_path / "data" / "train.arrow", model=tmp_path / "m.safetensors", **run)
    destiny.train(CONFIG, f"s3://{BUCKET}/py/data/train.arrow",
                  model=f"s3://{BUCKET}/py/m.safetensors", **run)
    s3.download_file(BUCKET, "py/m.safetensors", str(tmp_path / "remote.safetensors"))
    assert model_contents(tmp_path / "remote.safetensors") == model_contents(tmp_path / "m.safetensors")
    with pytest.raises(destiny.DestinyError, match="already exists: resume it"):
        destiny.train(CONFIG, f"s3://{BUCKET}/py/data/train.arrow",
                      model=f"s3://{BUCKET}/py/m.safetensors", **run)

    batch = ipc.open_file(tmp_path / "data" / "test_input.arrow").read_all()
    local = destiny.Model.load(tmp_path / "m.safetensors", features=tmp_path / "data" / "features.idx",
                               device="cpu")
    remote = destiny.Model.load(f"s3://{BUCKET}/py/m.safetensors",
                                features=f"s3://{BUCKET}/py/data/features.idx", device="cpu")
    top = remote.predict(batch, 10)
    assert top.equals(local.predict(batch, 10))
    assert str(remote.path) == f"s3://{BUCKET}/py/m.safetensors"

    rows = [
        destiny.evaluate(truth, [top], k=[5, 10], plot=plot)
        for truth, plot in [(tmp_path / "data" / "test_target.arrow", tmp_path / "p.png"),
                            (f"s3://{BUCKET}/py/data/test_target.arrow", f"s3://{BUCKET}/py/p.png")]
    ]
    assert rows[0] == rows[1]
    assert objects(s3, "py")["p.png"] == (tmp_path / "p.png").read_bytes()


def test_a_killed_upload_leaves_no_object(s3, tmp_path):
    """A model of some 250 MB goes up in parts; the command killed once the upload has
    begun leaves the key without an object, never a partial one."""
    rng = random.Random(3)
    lines = ["user,item"] + [f"u{u},i{rng.randrange(10_000)}" for u in range(48) for _ in range(300)]
    lines += [f"u0,i{i}" for i in range(10_000)]  # every item appears, so the width is 10,000
    (tmp_path / "ratings.csv").write_text("\n".join(lines) + "\n")
    destiny.convert(tmp_path / "ratings.csv", tmp_path / "data")
    config = CONFIG.read_text().replace('"N": 128', '"N": 1024')
    (tmp_path / "wide.json").write_text(config)
    key = "killed/wide.safetensors"
    args = ["train", "-c", tmp_path / "wide.json", "-i", tmp_path / "data" / "data.arrow",
            "-n", f"s3://{BUCKET}/{key}", "-e", 1, "-b", 48, "--device", "cpu"]
    training = subprocess.Popen(
        [str(_destiny_binary()), *map(str, args)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    while not s3.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads"):
        assert training.poll() is None, training.stderr.read().decode()
        assert time.monotonic() < deadline, "the upload did not begin"
        time.sleep(0.01)
    training.kill()
    assert training.wait() == -signal.SIGKILL, "killed before it finished"
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="killed/")


def test_tune_reads_no_test_object(s3, ratings, cli, caplog):
    """`tune` on a prefix downloads the training and validation users' objects only, never
    the test users' (the server's request log says which objects were read)."""
    s3.upload_file(str(ratings), BUCKET, "tune/ratings.csv")
    code, _, err = cli("convert", "-i", f"s3://{BUCKET}/tune/ratings.csv", *SPLIT,
                       "--out-dir", f"s3://{BUCKET}/tune/data")
    assert code == 0, err
    caplog.set_level(logging.INFO, logger="werkzeug")
    code, out, err = cli("tune", "-c", CONFIG, "--data", f"s3://{BUCKET}/tune/data", "--out-dir",
                         f"s3://{BUCKET}/tune/best", "--learning-rates", "0.01", "-e", 2,
                         "--device", "cpu")
    assert code == 0, err
    requests = (re.search(r'"GET (\S+) HTTP', r.getMessage()) for r in caplog.records)
    read = {m.group(1).split("?")[0] for m in requests if m and "/tune/data/" in m.group(1)}
    assert read == {f"/{BUCKET}/tune/data/{name}" for name in
                    ["train.arrow", "validation_input.arrow", "validation_target.arrow"]}, read
    assert {"model.safetensors", "config.json", "best.json"} <= set(objects(s3, "tune/best"))
