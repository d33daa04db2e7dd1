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
target/release/destiny-bench "${shape[@]}" --batch "$batch" --json > "$data/destiny.jsonl"
"$venv/bin/python" bench/pytorch_autoencoder.py "$data" --device cpu --batch "$batch" --threads "$threads" > "$data/pytorch.jsonl"
echo "$users users x $items items, $interactions interactions; 128 sigmoid hidden units, $threads threads"
python3 bench/table.py "$data/destiny.jsonl" "$data/pytorch.jsonl"
