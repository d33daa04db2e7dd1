#!/usr/bin/env python3
"""The destiny command end to end on generated data: convert (beside the same work in
pandas), train, info, export, predict to text and to Parquet, each step's wall time and peak
memory in a table, and for train and predict the device's part of it (their `--timings`:
the training loop, the scoring and top-K) and the whole command's multiple of it.

Needs only a destiny binary (a copied release build will do), Python 3 with NumPy and
pyarrow. The data has the MovieLens-20M shape by default (138,493 users, 26,744 items, 20M
interactions with a long-tailed popularity); --items 1000000 makes the wide catalog.

    python3 bench/e2e.py --destiny target/release/destiny --device cpu
    python3 bench/e2e.py --destiny ./destiny --device cuda --json e2e.json
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time



def write_interactions(users, items, count, seed, target):
    """Writes `count` (user, item, rating) rows to the Parquet file `target`: users
    uniform, items Zipf-like by rank."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    user = rng.integers(0, users, count, dtype=np.int64)
    # Popularity falls as 1/rank^0.8 (a long tail, as in MovieLens).
    weights = 1.0 / np.arange(1, items + 1) ** 0.8
    item = rng.choice(items, count, p=weights / weights.sum()).astype(np.int64)
    rating = rng.integers(1, 6, count).astype(np.float32)
    pq.write_table(pa.table({"user": user, "item": item, "rating": rating}), target)


def config(hidden):
    """DSSTNE's MovieLens autoencoder with a hidden layer of `hidden` units."""
    return {
        "Version": 0.8,
        "Name": f"autoencoder {hidden}",
        "Kind": "FeedForward",
        "ShuffleIndices": True,
        "Denoising": {"p": 0.2},
        "ErrorFunction": "ScaledMarginalCrossEntropy",
        "Layers": [
            {"Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "gl_input", "Sparse": True},
            {"Name": "Hidden", "Kind": "Hidden", "Type": "FullyConnected", "N": hidden,
             "Activation": "Sigmoid", "Sparse": True},
            {"Name": "Output", "Kind": "Output", "Type": "FullyConnected", "N": "auto",
             "DataSet": "gl_output", "Activation": "Sigmoid", "Sparse": True},
        ],
    }


# The phases of `--timings` that are the device's work.
DEVICE_PHASES = ("train (checkpoints included)", "score and select the top-K")


def run(step, command, results):
    """Runs `command`, recording its wall time and peak resident memory under `step`."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.stderr.write(output.decode(errors="replace"))
        sys.exit(f"e2e: step '{step}' failed ({' '.join(command)})")
    text = output.decode(errors="replace")
    result = {"step": step, "seconds": seconds, "peak_mb": usage.ru_maxrss / 1024}
    # `destiny: timings: NAME 0.123 s, ...; total T s` from a command run with --timings.
    for line in text.splitlines():
        if line.startswith("destiny: timings: "):
            laps = line[len("destiny: timings: "):].split("; total ")[0].split(", ")
            result["laps"] = {lap.rsplit(" ", 2)[0]: float(lap.rsplit(" ", 2)[1]) for lap in laps}
            device = [v for k, v in result["laps"].items() if k in DEVICE_PHASES]
            if device:
                result["device_seconds"] = device[0]
    results.append(result)
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--destiny", default=shutil.which("destiny") or "target/release/destiny")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, ...")
    parser.add_argument("--users", type=int, default=138_493)
    parser.add_argument("--items", type=int, default=26_744)
    parser.add_argument("--interactions", type=int, default=20_000_000)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("-k", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", help="folder to work in (default: a temporary one)")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--generate-only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate_only:
        write_interactions(args.users, args.items, args.interactions, args.seed,
                           args.generate_only)
        return
    destiny = os.path.abspath(args.destiny)
    work = args.workdir or tempfile.mkdtemp(prefix="destiny-e2e-")
    os.makedirs(work, exist_ok=True)
    path = lambda name: os.path.join(work, name)
    results = []

    start = time.perf_counter()
    # Made in a child process, so that this one stays small: a child's peak memory counts
    # what its parent held when it was started.
    subprocess.run([sys.executable, __file__, "--generate-only", path("ratings.parquet"),
                    "--users", str(args.users), "--items", str(args.items),
                    "--interactions", str(args.interactions), "--seed", str(args.seed)],
                   check=True)
    print(f"e2e: generated {args.interactions} interactions in "
          f"{time.perf_counter() - start:.1f} s in {work}", file=sys.stderr)
    with open(path("config.json"), "w") as out:
        json.dump(config(args.hidden), out)
    model, infer, bf16 = path("model.safetensors"), path("model.infer.safetensors"), \
        path("model.bf16.safetensors")
    data = path("data/data.arrow")
    device = ["--device", args.device]

    run("convert", [destiny, "convert", "-i", path("ratings.parquet"), "--out-dir",
                    path("data")], results)
    peer = os.path.join(os.path.dirname(os.path.abspath(__file__)), "convert_peer.py")
    run("convert, the same in pandas (bench/convert_peer.py)",
        [sys.executable, peer, path("ratings.parquet"), path("peer")], results)
    run(f"train ({args.epochs} epoch(s), batch {args.batch})",
        [destiny, "train", "-c", path("config.json"), "-i", data, "-n", model, "-b",
         str(args.batch), "-e", str(args.epochs), "--overwrite", "--timings", *device], results)
    run("info", [destiny, "info", model], results)
    run("cat model > /dev/null (reference)", ["sh", "-c", f"cat '{model}' > /dev/null"], results)
    run("export", [destiny, "export", "-n", model, "-o", infer], results)
    run("export --bf16", [destiny, "export", "-n", model, "-o", bf16, "--bf16"], results)
    predict = [destiny, "predict", "-r", data, "-k", str(args.k), "--timings", *device]
    run(f"predict top-{args.k}, text", [*predict, "-n", model, "-s", path("recs.txt")], results)
    run(f"predict top-{args.k}, Parquet",
        [*predict, "-n", model, "-s", path("recs.parquet")], results)
    run(f"predict top-{args.k}, text, from the bf16 export",
        [*predict, "-n", bf16, "-s", path("recs.bf16.txt")], results)

    sizes = {name: os.path.getsize(p) for name, p in
             [("model", model), ("export", infer), ("bf16 export", bf16)]}
    print(f"\n{args.users} users, {args.items} items, {args.interactions} interactions, "
          f"hidden {args.hidden}, device {args.device}; model {sizes['model'] / 1e6:.0f} MB, "
          f"export {sizes['export'] / 1e6:.0f} MB, bf16 {sizes['bf16 export'] / 1e6:.0f} MB\n")
    print(f"| {'step':<45} | {'wall s':>7} | {'device s':>8} | {'wall / device':>13} | {'peak MB':>8} |")
    print(f"| {'-' * 45} | {'-' * 7}: | {'-' * 8}: | {'-' * 13}: | {'-' * 8}: |")
    for r in results:
        part = r.get("device_seconds")
        device_s, ratio = (f"{part:.2f}", f"{r['seconds'] / part:.1f}x") if part else ("-", "-")
        print(f"| {r['step']:<45} | {r['seconds']:>7.2f} | {device_s:>8} | {ratio:>13} | {r['peak_mb']:>8.0f} |")
    print()
    for r in results:
        if "laps" in r:
            print(f"{r['step']}: " + ", ".join(f"{k} {v:.3f} s" for k, v in r["laps"].items()))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"args": vars(args), "sizes": sizes, "steps": results}, out, indent=1)
    if not args.workdir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
