"""Destiny on Apache Spark: the loop of Amazon's Spark + DSSTNE pipeline, with Spark itself
scheduling the GPUs.

- :func:`prepare` is ``destiny convert`` as Spark jobs: filtering, feature and sample
  indices and splits, writing datasets that ``destiny train`` reads, identical to what
  ``destiny convert`` writes for the same input and seed.
- :func:`train` is one training job launched in barrier execution mode.
- :func:`predict` is data-parallel top-K with ``mapInArrow``: each Python worker loads the
  model once, and a task uses the GPU Spark assigned to it.

Paths (datasets, models) must be reachable from the executors: local paths on one machine,
a shared file system on a cluster.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pyarrow as pa

import destiny
from destiny import _destiny

__all__ = ["Prepared", "prepare", "predict", "train"]

# Spark's type of the long-form top-K that predict returns.
PREDICTION_SCHEMA = "user string, item string, score float, rank int"


@dataclasses.dataclass
class Prepared:
    """What :func:`prepare` wrote: the folder, a dict per dataset file (``file``,
    ``samples``, ``features``, ``interactions``), and each dataset's rows as a DataFrame
    (``user``, ``indices``, ``values``) by name (``train``, ``test_input``, ...), ready for
    :func:`predict`."""

    out_dir: str
    files: List[Dict[str, Any]]
    frames: Dict[str, Any]

    def path(self, name: str) -> str:
        """The path of a file in the folder (``"train.arrow"``, ``"features.idx"``...)."""
        return os.path.join(self.out_dir, name)


def _to_arrow(frame: Any) -> pa.Table:
    """A DataFrame collected to the driver as Arrow (Spark 4's toArrow, or Spark 3.5's)."""
    if hasattr(frame, "toArrow"):
        return frame.toArrow()
    return pa.Table.from_batches(frame._collect_as_arrow(), schema=None)  # Spark 3.5


def _numbered(frame: Any, key: str, number: str) -> Any:
    """``frame`` (``key``, ``first``) numbered 0, 1, ... in order of ``first``."""
    ordered = frame.orderBy("first").select(key)
    pairs = ordered.rdd.zipWithIndex().map(lambda pair: (pair[0][0], pair[1]))
    return pairs.toDF(f"{key} string, {number} long")


def prepare(
    df: Any,
    user_col: str,
    item_col: str,
    rating_col: Optional[str] = None,
    timestamp_col: Optional[str] = None,
    *,
    out_dir: str,
    min_rating: Optional[float] = None,
    min_user_interactions: int = 1,
    min_item_interactions: int = 1,
    keep_ratings: bool = False,
    split: str = "none",
    test_users: int = 0,
    validation_users: int = 0,
    holdout_fraction: float = 0.2,
    seed: int = 1,
) -> Prepared:
    """``destiny convert --out-dir`` as Spark jobs, with the same options and defaults.

    ``df`` has one row per interaction; its row order plays the part of the file order of
    ``destiny convert`` (items and users are numbered by first appearance). Cleaning merges
    a user's repeated interactions with an item (highest rating, latest timestamp), keeps
    ratings of at least ``min_rating``, drops items then users with too few interactions;
    the feature and sample indices number what is left. The split (none, heldout-users,
    random or time) is seeded exactly as ``destiny convert``'s: the seeded choices are made
    by Destiny's own Rust code, on the driver for which users are held out (a list of
    positions) and on the executors for each user's items, because they are ChaCha8 streams
    that Spark's random functions cannot reproduce. Each dataset's rows are collected to
    the driver and written there as one Arrow file, as ``destiny train`` reads them.
    """
    from pyspark.sql import functions as F

    kinds = {"none", "heldout-users", "random", "time"}
    if split not in kinds:
        raise destiny.DestinyError(f"unknown split '{split}': none, heldout-users, random or time")
    by_time = split == "time"
    if split != "none":
        _destiny._check_split(holdout_fraction, False, True)
    if min_rating is not None and rating_col is None:
        raise destiny.DestinyError("a minimum rating was asked for but the input has no ratings")

    def column(name: Optional[str], kind: str) -> Any:
        return F.col(name).cast(kind) if name else F.lit(None).cast(kind)

    base = df.select(
        F.col(user_col).cast("string").alias("user"),
        F.col(item_col).cast("string").alias("item"),
        column(rating_col, "float").alias("rating"),
        column(timestamp_col, "long").alias("ts"),
    ).withColumn("pos", F.monotonically_increasing_id())
    # The positions must not change between the jobs below.
    base = base.persist()
    try:
        merged = base.groupBy("user", "item").agg(
            F.max("rating").alias("rating"), F.max("ts").alias("ts")
        )
        if min_rating is not None:
            if merged.where(F.col("rating").isNotNull()).limit(1).count() == 0:
                raise destiny.DestinyError(
                    "a minimum rating was asked for but the input has no ratings"
                )
            merged = merged.where(F.col("rating") >= F.lit(min_rating).cast("float"))
        items = merged.groupBy("item").count().where(F.col("count") >= min_item_interactions)
        kept = merged.join(items.select("item"), "item")
        users = kept.groupBy("user").count().where(F.col("count") >= max(1, min_user_interactions))
        kept = kept.join(users.select("user"), "user")
        first_item = base.groupBy("item").agg(F.min("pos").alias("first"))
        first_user = base.groupBy("user").agg(F.min("pos").alias("first"))
        features = _numbered(
            kept.select("item").distinct().join(first_item, "item"), "item", "column"
        )
        samples = _numbered(kept.select("user").distinct().join(first_user, "user"), "user", "row")
        feature_ids = [r["item"] for r in features.orderBy("column").collect()]
        user_count = samples.count()
        if user_count == 0:
            raise destiny.DestinyError("no user is left after filtering")
        value = F.coalesce(F.col("rating"), F.lit(1.0)) if keep_ratings else F.lit(1.0)
        entries = (
            kept.join(features, "item")
            .join(samples, "user")
            .select(
                "row",
                "user",
                F.struct(
                    F.col("column").cast("int").alias("column"),
                    value.cast("float").alias("value"),
                    F.col("ts").alias("ts"),
                ).alias("entry"),
            )
        )
        rows = (
            entries.groupBy("row", "user")
            .agg(F.array_sort(F.collect_list("entry")).alias("e"))
            .select(
                "row",
                "user",
                F.col("e.column").alias("indices"),
                F.col("e.value").alias("values"),
                F.col("e.ts").alias("timestamps"),
            )
            .persist()
        )
        if by_time and entries.where(F.col("entry.ts").isNull()).limit(1).count() > 0:
            _destiny._check_split(holdout_fraction, True, False)

        def whole(frame: Any) -> Any:
            return frame.select("row", "user", "indices", "values")

        sets: List[Tuple[str, Any]] = []
        if split == "none":
            sets.append(("data", whole(rows)))
        elif split == "heldout-users":
            test, validation = _destiny._held_out(user_count, test_users, validation_users, seed)
            spark = df.sparkSession
            groups = spark.createDataFrame(
                [(r, "test") for r in test] + [(r, "validation") for r in validation],
                "row long, part string",
            )
            sets.append(("train", whole(rows.join(groups, "row", "left_anti"))))
            for part in ("validation", "test"):
                chosen = rows.join(groups.where(F.col("part") == part).select("row"), "row")
                if (validation if part == "validation" else test):
                    sets.extend(_folded(chosen, part + "_", holdout_fraction, seed, False))
        else:
            sets.extend(_folded(rows, "", holdout_fraction, seed, by_time))
        tables = [
            (name, _to_arrow(frame.orderBy("row").select(F.col("user").alias("sample"), "indices", "values")))
            for name, frame in sets
        ]
        files = _destiny._write_sets(out_dir, feature_ids, tables)
        frames = {
            name: frame.select("user", "indices", "values") for name, frame in sets
        }
        return Prepared(out_dir=str(out_dir), files=files, frames=frames)
    finally:
        base.unpersist()


def _folded(rows: Any, prefix: str, fraction: float, seed: int, by_time: bool) -> List[Tuple[str, Any]]:
    """Each user's items split into input and target on the executors, by Destiny's own
    seeded choice (``destiny convert``'s, for the user's position ``row``)."""
    from pyspark.sql import functions as F

    schema = (
        "row long, user string, input_indices array<int>, input_values array<float>, "
        "target_indices array<int>, target_values array<float>"
    )

    def fold(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from destiny import _destiny as native

        for batch in batches:
            rows_batch = pa.RecordBatch.from_arrays(
                [batch.column("row"), batch.column("indices"), batch.column("values"), batch.column("timestamps")],
                names=["user", "indices", "values", "timestamps"],
            )
            out = native._fold(rows_batch, fraction, seed, by_time)
            yield pa.RecordBatch.from_arrays(
                [batch.column("row"), batch.column("user")] + out.columns[1:],
                names=["row", "user", "input_indices", "input_values", "target_indices", "target_values"],
            )

    folded = rows.mapInArrow(fold, schema).persist()
    return [
        (
            f"{prefix}{part}",
            folded.select(
                "row",
                "user",
                F.col(f"{part}_indices").alias("indices"),
                F.col(f"{part}_values").alias("values"),
            ),
        )
        for part in ("input", "target")
    ]


# Models loaded in this Python worker, by (path, features, device): Spark reuses workers
# between tasks, so a model is loaded once per worker, not once per task.
_MODELS: Dict[Tuple[str, Optional[str], str], destiny.Model] = {}


def _task_device(device: str) -> str:
    """The device for this task: the GPU Spark assigned to it (``spark.task.resource.gpu``),
    else ``device``."""
    from pyspark import TaskContext

    context = TaskContext.get()
    gpus = context.resources().get("gpu") if context is not None else None
    if gpus is not None and gpus.addresses and device in ("auto", "cuda"):
        return f"cuda:{gpus.addresses[0]}"
    return device


def _load(model_uri: str, features: Optional[str], device: str) -> destiny.Model:
    key = (model_uri, features, device)
    if key not in _MODELS:
        _MODELS[key] = destiny.Model.load(model_uri, features=features, device=device)
    return _MODELS[key]


def predict(
    df: Any,
    model_uri: str,
    k: int = 10,
    *,
    features: Optional[str] = None,
    exclude_seen: bool = True,
    user_col: str = "user",
    batch_size: int = 1024,
    device: str = "auto",
) -> Any:
    """The top ``k`` items of every user of ``df`` as a DataFrame ``user``, ``item``,
    ``score``, ``rank`` (from 1), as ``destiny predict`` computes them.

    ``df`` has a row per user: ``user_col`` (the id), ``indices`` (the user's columns in the
    model's input feature index, as :func:`prepare` makes them) and optionally ``values``.
    Each partition is scored by one task through ``mapInArrow``, in Arrow batches; the model
    is loaded once per Python worker, onto the GPU Spark assigned to the task when there is
    one (``spark.task.resource.gpu.amount``), so tasks queue for GPUs instead of sharing one.
    ``features`` is the output feature index (default: ``features.idx`` beside the model).
    """
    from pyspark.sql import functions as F

    columns = [F.col(user_col).cast("string").alias("user"), F.col("indices")]
    if "values" in df.columns:
        columns.append(F.col("values"))
    model_uri = str(model_uri)
    features = str(features) if features is not None else None

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        model = _load(model_uri, features, _task_device(device))
        for batch in batches:
            if batch.num_rows == 0:
                continue
            top = model.predict(batch, k, exclude_seen, batch_size=batch_size)
            yield pa.RecordBatch.from_arrays(
                [top.column(0), top.column(1), top.column(2), top.column(3).cast(pa.int32())],
                names=["user", "item", "score", "rank"],
            )

    return df.select(*columns).mapInArrow(score, PREDICTION_SCHEMA)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _train_rank(rank: int, arguments: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """One rank's part of a training job: ``destiny.train`` in a process whose environment
    names its rank (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). Rank 0's summary, else
    None."""
    summary = destiny.train(**arguments)
    if rank != 0:
        return None
    summary["model"] = str(summary["model"])
    return summary


def train(
    spark: Any,
    config: str,
    data: Optional[str] = None,
    *,
    model: str,
    world_size: int = 1,
    device: str = "auto",
    **options: Any,
) -> Dict[str, Any]:
    """Trains a network as one Spark job in barrier execution mode, over ``world_size``
    tasks (one per GPU when Spark schedules GPUs). Arguments are those of
    :func:`destiny.train` (``parallel`` among them: model, data or auto); paths must be
    reachable from the executors, and rank 0 writes the model. Every task is one rank of the
    job, on the GPU Spark gave it (NCCL between them), else on its CPU (the ranks exchange
    over TCP); they meet through ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
    ``MASTER_PORT`` taken from the barrier context. Returns rank 0's summary."""
    arguments = dict(options, config=str(config), data=None if data is None else str(data), model=str(model))
    arguments.setdefault("progress", False)

    def task(_: Iterator[Any]) -> Iterator[Dict[str, Any]]:
        from pyspark import BarrierTaskContext

        context = BarrierTaskContext.get()
        rank = context.partitionId()
        infos = context.getTaskInfos()
        port = context.allGather(str(_free_port()) if rank == 0 else "")[0]
        os.environ.update(
            RANK=str(rank),
            WORLD_SIZE=str(len(infos)),
            MASTER_ADDR=infos[0].address.rsplit(":", 1)[0],
            MASTER_PORT=port,
        )
        summary = _train_rank(rank, dict(arguments, device=_task_device(device)))
        context.barrier()
        if summary is not None:
            yield summary

    rdd = spark.sparkContext.parallelize(range(world_size), world_size)
    results = rdd.barrier().mapPartitions(task).collect()
    return results[0]
