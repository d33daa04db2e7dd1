"""destiny.spark with its data in S3: a real S3 server (moto's) on the loopback, local Spark."""

import socket
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

import destiny
from destiny import storage
from conftest import CONFIG, model_contents

spark_module = pytest.importorskip("destiny.spark")
moto_server = pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    """An empty bucket on a fresh S3 server; a function from a key to its URI."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    options = f"endpoint_override=127.0.0.1:{port}&scheme=http&access_key=test&secret_key=test&region=us-east-1"
    s3 = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", access_key="test",
                           secret_key="test", region="us-east-1", allow_bucket_creation=True)
    s3.create_dir("destiny")
    yield lambda key: f"s3://destiny/{key}?{options}"
    server.stop()


def read(uri):
    filesystem, path = pafs.FileSystem.from_uri(uri)
    with filesystem.open_input_stream(path) as f:
        return f.read()


def test_the_loop_with_its_data_in_s3(spark, ratings, cli, bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("DESTINY_CACHE", str(tmp_path / "cache"))
    interactions = spark.read.csv(str(ratings), header=True, inferSchema=True)
    options = dict(split="heldout-users", test_users=12, seed=3)
    prepared = spark_module.prepare(interactions, "user", "item", out_dir=bucket("data"), **options)
    code, _, err = cli("convert", "-i", ratings, "--split", "heldout-users", "--test-users", 12,
                       "--seed", 3, "--out-dir", tmp_path / "cli")
    assert code == 0, err
    # The same files as destiny convert writes, in the bucket.
    for name in ("train.arrow", "test_input.arrow", "test_target.arrow", "features.idx", "samples.idx"):
        assert read(prepared.path(name)) == (tmp_path / "cli" / name).read_bytes(), name

    model = bucket("data/model.safetensors")
    summary = spark_module.train(spark, str(CONFIG), prepared.path("train.arrow"), model=model,
                                 epochs=2, batch_size=16, device="cpu", seed=5)
    assert summary["model"] == model and summary["epochs_done"] == 2
    code, _, err = cli("train", "-c", CONFIG, "-i", tmp_path / "cli" / "train.arrow", "-n",
                       tmp_path / "cli" / "model.safetensors", "-e", 2, "-b", 16, "--device", "cpu",
                       "--seed", 5)
    assert code == 0, err
    assert model_contents(tmp_path / "cli" / "model.safetensors") == model_contents(Path(storage.localize(model)))

    code, _, err = cli("predict", "-n", tmp_path / "cli" / "model.safetensors", "-r",
                       tmp_path / "cli" / "test_input.arrow", "-k", 5, "-s", tmp_path / "recs.parquet",
                       "--device", "cpu")
    assert code == 0, err
    top = spark_module.predict(prepared.frames["test_input"].repartition(2), model, 5, device="cpu")
    ours = pa.Table.from_pylist([r.asDict() for r in top.collect()])
    expected = pq.read_table(tmp_path / "recs.parquet")
    ours = ours.select(["user", "rank", "item", "score"]).cast(expected.schema)
    key = [("user", "ascending"), ("rank", "ascending")]
    assert ours.sort_by(key).equals(expected.sort_by(key))


def test_storage_errors_name_the_object(bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("DESTINY_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="no such object"):
        storage.localize(bucket("nothing/here.arrow"))
    assert storage.localize(str(tmp_path / "x")) == str(tmp_path / "x")
    assert storage.join(bucket("a"), "b.arrow").startswith("s3://destiny/a/b.arrow?endpoint_override=")
