"""Top-K for every user through the Python package (what each destiny.spark.predict task
runs: Arrow batches into Model.predict, Arrow out) beside the destiny command on the same
model and users, to show what the Python path adds.

    python3 bench/python_predict.py MODEL USERS.arrow [--k 100] [--device cuda] [--destiny PATH]

Prints a table: the command's wall time (to Parquet), and the package's load, predict and
Parquet write, each the median of three runs.
"""

import argparse
import os
import statistics
import subprocess
import tempfile
import time

import pyarrow.ipc as ipc
import pyarrow.parquet as pq

import destiny


def timed(work, runs=3):
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("users")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--destiny", default="destiny")
    args = parser.parse_args()
    out = tempfile.mkdtemp(prefix="destiny-python-predict-")

    def command():
        subprocess.run([args.destiny, "predict", "-n", args.model, "-r", args.users, "-k", str(args.k),
                        "-s", os.path.join(out, "cli.parquet"), "--device", args.device],
                       check=True, capture_output=True)

    cli, _ = timed(command)
    users = ipc.open_file(args.users).read_all()
    load, model = timed(lambda: destiny.Model.load(args.model, device=args.device))
    predict, top = timed(lambda: model.predict(users, k=args.k))
    write, _ = timed(lambda: pq.write_table(top, os.path.join(out, "python.parquet")))
    print(f"| step ({users.num_rows} users, top-{args.k}, {args.device}) | seconds |")
    print("| --- | --- |")
    print(f"| destiny predict, model file to Parquet (whole command) | {cli:.3f} |")
    print(f"| Model.load | {load:.3f} |")
    print(f"| Model.predict, Arrow in and out | {predict:.3f} |")
    print(f"| Parquet write (pyarrow) | {write:.3f} |")
    print(f"| Python path in all | {load + predict + write:.3f} |")


if __name__ == "__main__":
    main()
