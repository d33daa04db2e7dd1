#!/usr/bin/env bash
# CPU benchmark: one training epoch (and top-100 prediction) of DSSTNE's MovieLens
# autoencoder in Destiny and in PyTorch, same synthetic data (the MovieLens-20M shape, with
# fewer users so that it runs in minutes on 2 cores), same batch and thread count, in one run.
# Installs PyTorch into work-data/bench-venv on first use. Prints a table with the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

users=${USERS:-20000}
items=${ITEMS:-26744}
interactions=${INTERACTIONS:-$((users * 20000263 / 138493))}
batch=${BATCH:-256}
threads=${THREADS:-$(nproc)}
venv=work-data/bench-venv
data=work-data/bench-data

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check torch numpy
fi
cargo build --release --quiet -p destiny-bench
shape=(--users "$users" --items "$items" --interactions "$interactions")
target/release/destiny-bench "${shape[@]}" --export "$data"

export RAYON_NUM_THREADS=$threads
destiny=$(target/release/destiny-bench "${shape[@]}" --batch "$batch" --json)
pytorch=$("$venv/bin/python" bench/pytorch_autoencoder.py "$data" --device cpu --batch "$batch" --threads "$threads")

python3 - "$destiny" "$pytorch" "$users" "$items" "$interactions" <<'PY'
import json, sys
destiny = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
pytorch = [json.loads(l) for l in sys.argv[2].splitlines() if l.strip()]
print(f"\n{sys.argv[3]} users x {sys.argv[4]} items, {sys.argv[5]} interactions; 128 sigmoid hidden units")
print(f"{'workload':<28} {'device':<22} {'Destiny (s)':>12} {'PyTorch (s)':>12} {'speed-up':>9}")
for d in destiny:
    p = next(p for p in pytorch if p["workload"] == d["workload"])
    print(f"{d['workload']:<28} {d['device']:<22} {d['seconds']:>12.3f} {p['seconds']:>12.3f} {p['seconds'] / d['seconds']:>8.2f}x")
PY
