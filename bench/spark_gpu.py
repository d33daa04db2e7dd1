#!/usr/bin/env python3
"""destiny.spark on a GPU that Spark schedules, beside the destiny command on the same GPU.

Starts Spark as a local cluster (one worker, several cores, the GPUs as a resource that
each task takes whole: spark.task.resource.gpu.amount=1), so tasks queue for the GPU as the
seed's Mesos queue did, then:

1. top-K for every user of generated data of the MovieLens-20M shape (e2e.py's data and
   autoencoder, trained for one epoch by the command): `destiny predict` to Parquet, and
   `destiny.spark.predict` written by Spark as Parquet, each timed, twice; the two outputs
   compared row for row;
2. with --movielens RATINGS, examples/spark/movielens.py (prepare, train, predict,
   evaluate, plot) on the same session, training and prediction on the scheduled GPU.

    python3 bench/spark_gpu.py --destiny ./destiny --workdir /tmp/spark-gpu [--movielens F]
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "examples", "spark"))

from e2e import config, write_interactions  # noqa: E402


def session(gpus, cores, memory_mb, workdir):
    """Spark as a local cluster whose worker offers `gpus` GPUs, one per task."""
    from pyspark.sql import SparkSession

    script = os.path.join(workdir, "gpus.sh")
    with open(script, "w") as out:
        addresses = ", ".join(f'"{g}"' for g in range(gpus))
        out.write(f"#!/bin/sh\necho '{{\"name\": \"gpu\", \"addresses\": [{addresses}]}}'\n")
    os.chmod(script, 0o755)
    spark = (
        SparkSession.builder.master(f"local-cluster[1,{cores},{memory_mb}]")
        .appName("destiny-spark-gpu")
        .config("spark.worker.resource.gpu.amount", str(gpus))
        .config("spark.worker.resource.gpu.discoveryScript", script)
        .config("spark.executor.resource.gpu.amount", str(gpus))
        .config("spark.task.resource.gpu.amount", "1")
        .config("spark.executorEnv.PYTHONPATH", os.environ.get("PYTHONPATH", ""))
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def timed(label, work, results):
    start = time.perf_counter()
    value = work()
    results.append((label, time.perf_counter() - start))
    print(f"spark_gpu: {label}: {results[-1][1]:.2f} s", file=sys.stderr)
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--destiny", default="destiny")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--device", default="cuda", help="the command's device (cuda; cpu to try it)")
    parser.add_argument("--users", type=int, default=138_493)
    parser.add_argument("--items", type=int, default=26_744)
    parser.add_argument("--interactions", type=int, default=20_000_000)
    parser.add_argument("-k", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--gpus", type=int, default=1)
    parser.add_argument("--cores", type=int, default=4)
    parser.add_argument("--movielens", help="MovieLens-100K ratings: also run the example job")
    args = parser.parse_args()
    import pyarrow.compute as pc
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    import destiny.spark as ds

    work = os.path.abspath(args.workdir)
    os.makedirs(work, exist_ok=True)
    path = lambda name: os.path.join(work, name)
    destiny = os.path.abspath(args.destiny)
    device = ["--device", args.device]
    results = []

    write_interactions(args.users, args.items, args.interactions, 1, path("ratings.parquet"))
    subprocess.run([destiny, "convert", "-i", path("ratings.parquet"), "--out-dir", path("data")],
                   check=True, stdout=subprocess.DEVNULL)
    with open(path("config.json"), "w") as out:
        json.dump(config(128), out)
    model = path("model.safetensors")
    subprocess.run([destiny, "train", "-c", path("config.json"), "-i", path("data/data.arrow"), "-n",
                    model, "-b", "1024", "-e", "1", "--overwrite", *device], check=True,
                   stderr=subprocess.DEVNULL)
    # The users as Spark reads them: a Parquet file of user, indices.
    users = ipc.open_file(path("data/data.arrow")).read_all()
    pq.write_table(users.select(["sample", "indices"]).rename_columns(["user", "indices"]),
                   path("users.parquet"))

    spark = session(args.gpus, args.cores, 16_384, work)
    frame = spark.read.parquet(path("users.parquet")).repartition(args.partitions).cache()
    frame.count()
    command = [destiny, "predict", "-n", model, "-r", path("data/data.arrow"), "-k", str(args.k),
               "-s", path("recs.parquet"), *device]
    spark_device = "cpu" if args.device == "cpu" else "auto"
    for run in (1, 2):
        timed(f"destiny predict, to Parquet (run {run})",
              lambda: subprocess.run(command, check=True, stderr=subprocess.DEVNULL), results)
        timed(f"destiny.spark.predict, {args.partitions} tasks queued for {args.gpus} GPU(s), "
              f"written by Spark as Parquet (run {run})",
              lambda: ds.predict(frame, model, args.k, features=path("data/features.idx"),
                                 device=spark_device)
              .write.mode("overwrite").parquet(path("spark-recs.parquet")), results)

    ours = pq.read_table(path("spark-recs.parquet")).select(["user", "rank", "item", "score"])
    theirs = pq.read_table(path("recs.parquet")).select(["user", "rank", "item", "score"])
    order = [("user", "ascending"), ("rank", "ascending")]
    ours, theirs = ours.sort_by(order), theirs.sort_by(order)
    same_items = ours.num_rows == theirs.num_rows and pc.all(pc.equal(
        ours.column("item"), theirs.column("item").cast(ours.column("item").type))).as_py()
    users_once = len(set(ours.column("user").to_pylist())) == users.num_rows
    print(f"\n{users.num_rows} users, {args.items} items, top {args.k}: Spark wrote {ours.num_rows} "
          f"rows; every user once: {users_once}; the same items in the same order as destiny "
          f"predict: {same_items}\n")
    print(f"| {'step':<90} | {'wall s':>7} |")
    print(f"| {'-' * 90} | {'-' * 7}: |")
    for label, seconds in results:
        print(f"| {label:<90} | {seconds:>7.2f} |")

    if args.movielens:
        import movielens

        sys.argv = ["movielens.py", os.path.abspath(args.movielens), path("movielens")]
        movielens.main()  # joins the session made above, with its GPU scheduling
    else:
        spark.stop()
    if not (same_items and users_once):
        sys.exit("spark_gpu: Spark's recommendations differ from destiny predict's")


if __name__ == "__main__":
    main()
