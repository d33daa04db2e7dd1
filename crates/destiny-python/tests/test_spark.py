"""destiny.spark on a real local Spark, against the destiny command."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import destiny
from conftest import CONFIG, model_contents

spark_module = pytest.importorskip("destiny.spark")


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


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
    assert files(tmp_path / "spark") == files(tmp_path / "cli")
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
    ours = ours.select(["user", "rank", "item", "score"]).cast(expected.schema)
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
