"""The Spark example's loop on a Spark cluster, with a worker killed while prediction runs:
prepare MovieLens-100K as Spark jobs, train one model over every worker in a barrier job,
predict the top 100 for many users with mapInArrow tasks spread over the workers, evaluate.
examples/spark/cluster.sh starts the cluster (a master and two workers on hosts of their
own) and runs this on it.

    python3 cluster_job.py --master URL --driver-host ADDRESS --workers N --kill COMMAND RATINGS OUT_DIR

Prediction scores every held-out user COPIES times under new ids (so that its stage lasts
long enough to lose a worker midway); once some of its tasks have finished, COMMAND (a shell
command) kills a worker. The output must still hold every copy once, each with exactly the
list that `destiny predict` gives the user it copies.
"""

import argparse
import os
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pyarrow.compute  # noqa: F401 (pa.compute)
import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

import destiny
import destiny.spark as ds

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COPIES = 400


def wait_for_executors(spark, count: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        # The driver counts itself among the block managers.
        if spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() >= count + 1:
            return
        time.sleep(0.5)
    sys.exit(f"error: {count} executors did not register within {timeout:.0f} s")


def kill_during_stage(spark, command: str, after: int) -> dict:
    """Runs `command` once a running stage has finished `after` tasks and still runs some; what
    the stage looked like then."""
    seen: dict = {}
    tracker = spark.sparkContext.statusTracker()

    def watch() -> None:
        while not seen:
            for stage in tracker.getActiveStageIds():
                info = tracker.getStageInfo(stage)
                if info and info.numCompletedTasks >= after and info.numActiveTasks > 0:
                    seen.update(stage=stage, tasks=info.numTasks, done=info.numCompletedTasks)
                    subprocess.run(command, shell=True, check=False)
                    return
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()
    return seen


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--master", required=True)
    parser.add_argument("--driver-host", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill", required=True)
    parser.add_argument("ratings")
    parser.add_argument("out")
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    spark = (
        SparkSession.builder.master(args.master)
        .appName("destiny-cluster")
        .config("spark.driver.host", args.driver_host)
        .config("spark.driver.bindAddress", args.driver_host)
        .config("spark.executor.cores", "1")
        .config("spark.executor.memory", "1g")
        .config("spark.pyspark.python", sys.executable)
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    wait_for_executors(spark, args.workers)
    started = time.time()

    raw = spark.read.csv(args.ratings, sep="\t", header=True).toDF("user", "item", "rating", "timestamp")
    prepared = ds.prepare(
        raw, "user", "item", "rating", "timestamp", out_dir=out,
        min_rating=4, min_user_interactions=5, split="heldout-users", test_users=150, seed=1,
    )
    print(f"prepared {', '.join(f['file'] for f in prepared.files)} in {out}")

    model = os.path.join(out, "model.safetensors")
    summary = ds.train(
        spark, os.path.join(REPO, "examples/movielens/config.json"), prepared.path("train.arrow"),
        model=model, world_size=args.workers, epochs=60, batch_size=256, learning_rate=0.01,
    )
    print(f"trained {summary['epochs_done']} epochs on {args.workers} workers ({summary['device']}), "
          f"loss {summary['epochs'][-1]['loss']:.2f}")

    users = prepared.frames["test_input"]
    copies = spark.range(COPIES).withColumnRenamed("id", "copy")
    many = (
        users.crossJoin(copies)
        .withColumn("user", F.concat_ws("#", F.col("user").cast("string"), F.col("copy").cast("string")))
        .drop("copy")
        .repartition(48)
    )
    recs_path = os.path.join(out, "recs.parquet")
    killed = kill_during_stage(spark, args.kill, after=4)
    ds.predict(many, model, k=100, device="cpu").write.mode("overwrite").parquet(recs_path)
    if not killed:
        sys.exit("error: prediction ended before a worker could be killed")
    print(f"killed a worker after {killed['done']} of {killed['tasks']} prediction tasks")

    # Every copy once, each with the list of the user it copies.
    ours = pq.read_table(recs_path)
    reference = destiny.Model.load(model).predict(
        pa.ipc.open_file(prepared.path("test_input.arrow")).read_all(), k=100
    ).to_pydict()
    expected = {}
    for user, item, rank in zip(reference["user"], reference["item"], reference["rank"]):
        expected.setdefault(user, {})[rank] = item
    lists: dict = {}
    for user, item, rank in zip(*(ours.column(c).to_pylist() for c in ("user", "item", "rank"))):
        ranks = lists.setdefault(user, {})
        if rank in ranks:
            sys.exit(f"error: user {user} has rank {rank} twice")
        ranks[rank] = item
    wanted = {f"{user}#{copy}" for user in expected for copy in range(COPIES)}
    if set(lists) != wanted:
        sys.exit(f"error: {len(wanted - set(lists))} users missing, {len(set(lists) - wanted)} unexpected")
    wrong = [u for u, ranks in lists.items() if ranks != expected[u.rsplit("#", 1)[0]]]
    if wrong:
        sys.exit(f"error: {len(wrong)} users' lists differ from destiny predict's, e.g. {wrong[0]}")
    print(f"{ours.num_rows} recommendations for {len(lists)} users: each once, each as destiny predict gives it")

    first = ours.filter(pa.compute.ends_with(ours.column("user"), "#0"))
    first = first.set_column(0, "user", pa.compute.replace_substring_regex(first.column("user"), "#0$", ""))
    rows = destiny.evaluate(prepared.path("test_target.arrow"), [first], labels=["autoencoder"],
                            k=[20, 50, 100], plot=os.path.join(out, "metrics.png"))
    for r in rows:
        print(f"K {r['k']:>4}  precision {r['precision']:.4f}  recall {r['recall']:.4f}  NDCG {r['ndcg']:.4f}")
    print(f"done in {time.time() - started:.0f} s")
    spark.stop()


if __name__ == "__main__":
    main()
