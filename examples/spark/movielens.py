"""The loop of the Spark + DSSTNE blog post on MovieLens-100K, with local Spark driving
Destiny: prepare the data as Spark jobs, train in a barrier job, predict the top 100 with
mapInArrow tasks, evaluate against the held-out items, and plot precision, recall and NDCG.

    python3 examples/spark/movielens.py [RATINGS] [OUT_DIR]

RATINGS defaults to what scripts/fetch-movielens.sh fetches; OUT_DIR to work-data/spark.
With GPUs that Spark schedules (spark.task.resource.gpu.amount), training and every
prediction task run on the GPU Spark assigns.
"""

import os
import sys
import time

from pyspark.sql import SparkSession

import destiny
import destiny.spark as ds

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    ratings = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "work-data/movielens/ml-100k.inter")
    out = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else os.path.join(REPO, "work-data/spark"))
    spark = (
        SparkSession.builder.master(os.environ.get("SPARK_MASTER", "local[2]"))
        .appName("destiny-movielens")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    started = time.time()

    # RecBole's file: user_id:token, item_id:token, rating:float, timestamp:float.
    raw = spark.read.csv(ratings, sep="\t", header=True).toDF("user", "item", "rating", "timestamp")
    prepared = ds.prepare(
        raw, "user", "item", "rating", "timestamp", out_dir=out,
        min_rating=4, min_user_interactions=5, split="heldout-users", test_users=150, seed=1,
    )
    for f in prepared.files:
        print(f"{f['file']:<20} {f['samples']:>6} users {f['features']:>6} items {f['interactions']:>7} interactions")

    model = os.path.join(out, "model.safetensors")
    summary = ds.train(
        spark, os.path.join(REPO, "examples/movielens/config.json"), prepared.path("train.arrow"),
        model=model, epochs=60, batch_size=256, learning_rate=0.01, overwrite=True,
    )
    last = summary["epochs"][-1]
    print(f"trained {summary['epochs_done']} epochs on {summary['device']}: loss {last['loss']:.2f}")

    recs = ds.predict(prepared.frames["test_input"].repartition(2), model, k=100)
    recs.write.mode("overwrite").parquet(os.path.join(out, "recs.parquet"))
    table = spark.read.parquet(os.path.join(out, "recs.parquet")).toArrow()
    print(f"{table.num_rows} recommendations for {len(set(table.column('user').to_pylist()))} users")

    plot = os.path.join(out, "metrics.png")
    rows = destiny.evaluate(prepared.path("test_target.arrow"), [table], labels=["autoencoder"],
                            k=[10, 20, 50, 100], plot=plot)
    print(f"{'K':>5} {'precision':>10} {'recall':>10} {'NDCG':>10}")
    for r in rows:
        print(f"{r['k']:>5} {r['precision']:>10.4f} {r['recall']:>10.4f} {r['ndcg']:>10.4f}")
    print(f"plot: {plot}  ({time.time() - started:.0f} s)")
    spark.stop()


if __name__ == "__main__":
    main()
