"""destiny.spark on a real local Spark, against the destiny command."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import destiny
from conftest import BUCKET, CONFIG, local_files, model_contents, objects

spark_module = pytest.importorskip("destiny.spark")


@pytest.fixture(scope="module")
def interactions(spark, ratings):
    """The ratings as a DataFrame, in file order (one partition)."""
    return spark.read.csv(str(ratings), header=True, inferSchema=True)


@pytest.mark.parametrize(
    "options, flags",
    [
        (
            dict(min_rating=2, min_user_interactions=4, min_item_interactions=2, keep_ratings=True,
                 split="heldout-users", test_users=8, validation_users=5, seed=9),
            ["--min-rating", 2, "--min-user-interactions", 4, "--min-item-interactions", 2,
             "--keep-ratings", "--split", "heldout-users", "--test-users", 8,
             "--validation-users", 5, "--seed", 9],
        ),
        (dict(split="time", holdout_fraction=0.25), ["--split", "time", "--holdout-fraction", 0.25]),
    ],
    ids=["heldout-users", "time"],
)
def test_prepare_writes_what_convert_writes(interactions, ratings, cli, tmp_path, options, flags):
    code, _, err = cli("convert", "-i", ratings, *flags, "--out-dir", tmp_path / "cli")
    assert code == 0, err
    prepared = spark_module.prepare(interactions, "user", "item", "rating", "timestamp",
                                    out_dir=str(tmp_path / "spark"), **options)
    assert local_files(tmp_path / "spark") == local_files(tmp_path / "cli")
    assert {f["file"][: -len(".arrow")] for f in prepared.files} == set(prepared.frames)


def test_predict_and_train_match_the_command(spark, interactions, ratings, cli, cli_job, tmp_path):
    prepared = spark_module.prepare(interactions, "user", "item", out_dir=str(tmp_path),
                                    split="heldout-users", test_users=12, seed=3)
    model = tmp_path / "model.safetensors"
    # Two barrier tasks, two ranks on the CPU sharing every batch.
    summary = spark_module.train(spark, str(CONFIG), prepared.path("train.arrow"), model=str(model),
                                 world_size=2, epochs=2, batch_size=16, device="cpu")
    assert summary["epochs_done"] == 2
    # The same job as two processes of the command, started as a launcher starts them.
    for code, _, err in cli_job(2, "train", "-c", CONFIG, "-i", prepared.path("train.arrow"), "-n",
                                tmp_path / "cli.safetensors", "-e", 2, "-b", 16, "--device", "cpu"):
        assert code == 0, err
    assert model_contents(model) == model_contents(tmp_path / "cli.safetensors")

    code, _, err = cli("predict", "-n", model, "-r", prepared.path("test_input.arrow"), "-k", 5,
                       "-s", tmp_path / "recs.parquet", "--device", "cpu")
    assert code == 0, err
    expected = pq.read_table(tmp_path / "recs.parquet")
    frame = prepared.frames["test_input"].repartition(3)
    top = spark_module.predict(frame, str(model), 5, device="cpu")
    assert top.columns == ["user", "item", "score", "rank"]
    ours = pa.Table.from_pylist([r.asDict() for r in top.collect()])
    ours = ours.cast(expected.schema)
    ours = ours.sort_by([("user", "ascending"), ("rank", "ascending")])
    assert ours.equals(expected.sort_by([("user", "ascending"), ("rank", "ascending")]))


def test_prepare_errors_are_clear(interactions, tmp_path):
    with pytest.raises(destiny.DestinyError, match="a minimum rating was asked for but the input has no ratings"):
        spark_module.prepare(interactions, "user", "item", out_dir=str(tmp_path), min_rating=4)
    with pytest.raises(destiny.DestinyError, match="leave none of the"):
        spark_module.prepare(interactions, "user", "item", out_dir=str(tmp_path),
                             split="heldout-users", test_users=1000)
    with pytest.raises(destiny.DestinyError, match="no user is left after filtering"):
        spark_module.prepare(interactions, "user", "item", out_dir=str(tmp_path),
                             min_user_interactions=10_000)


def test_executors_read_and_write_objects(spark, interactions, s3, tmp_path):
    """prepare writes its datasets under a prefix, train reads them and uploads the model,
    and predict's tasks load the model from the bucket: the same as with local paths."""
    split = dict(split="heldout-users", test_users=12, seed=3)
    local = spark_module.prepare(interactions, "user", "item", out_dir=str(tmp_path), **split)
    remote = spark_module.prepare(interactions, "user", "item", out_dir=f"s3://{BUCKET}/spark", **split)
    assert objects(s3, "spark") == local_files(tmp_path)
    run = dict(epochs=2, batch_size=16, device="cpu")
    spark_module.train(spark, str(CONFIG), local.path("train.arrow"), model=str(tmp_path / "m.safetensors"), **run)
    remote_model = f"s3://{BUCKET}/spark/model/m.safetensors"
    summary = spark_module.train(spark, str(CONFIG), remote.path("train.arrow"), model=remote_model, **run)
    assert summary["model"] == remote_model
    s3.download_file(BUCKET, "spark/model/m.safetensors", str(tmp_path / "remote.safetensors"))
    assert model_contents(tmp_path / "remote.safetensors") == model_contents(tmp_path / "m.safetensors")
    frame = local.frames["test_input"].repartition(2)
    features = local.path("features.idx")
    collect = lambda top: sorted(tuple(r) for r in top.collect())
    expected = collect(spark_module.predict(frame, str(tmp_path / "m.safetensors"), 5,
                                            features=features, device="cpu"))
    got = collect(spark_module.predict(frame, remote_model, 5, features=remote.path("features.idx"),
                                       device="cpu"))
    assert got == expected and len(got) == 12 * 5
