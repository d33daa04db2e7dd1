#!/usr/bin/env bash
# Destiny's main job on the embedded default (the CPU): MovieLens-100K, fetched from the
# `recbole` wheel, converted with the held-out-users protocol (ratings >= 4 are positives,
# users with fewer than 5 dropped, 150 test users with an 80/20 fold-in), DSSTNE's
# MovieLens autoencoder trained, top-100 predicted, and evaluated beside most-popular and
# EASE over 5 seeds. Prints the table and writes the plot to work-data/movielens/plot.png.
set -euo pipefail
cd "$(dirname "$0")/.."

seeds=${SEEDS:-"1 2 3 4 5"}
work=work-data/movielens
mkdir -p "$work"

cargo build --release --quiet -p destiny-cli
destiny=target/release/destiny

data=$(scripts/fetch-movielens.sh)

for seed in $seeds; do
    run="$work/seed-$seed"
    echo "== seed $seed"
    $destiny convert -i "$data" --min-rating 4 --min-user-interactions 5 \
        --split heldout-users --test-users 150 --seed "$seed" --out-dir "$run" > /dev/null
    $destiny train -c examples/movielens/config.json -i "$run/train.arrow" -n "$run/autoencoder.safetensors" --overwrite \
        -b 256 --seed "$seed" 2>&1 | tail -n 1
    $destiny predict -n "$run/autoencoder.safetensors" -r "$run/test_input.arrow" -k 100 -s "$run/autoencoder.recs" 2> /dev/null
    $destiny baseline --kind popularity --train "$run/train.arrow" -i "$run/test_input.arrow" -k 100 -s "$run/popularity.recs"
    $destiny baseline --kind ease --train "$run/train.arrow" -i "$run/test_input.arrow" -k 100 -s "$run/ease.recs"
    $destiny evaluate --truth "$run/test_target.arrow" --k 10,20,50,100 --json \
        --recs "$run/autoencoder.recs" --label autoencoder \
        --recs "$run/popularity.recs" --label most-popular \
        --recs "$run/ease.recs" --label EASE > "$run/metrics.json"
done

first=$(echo $seeds | cut -d' ' -f1)
$destiny evaluate --truth "$work/seed-$first/test_target.arrow" --k 5,10,20,50,100 \
    --recs "$work/seed-$first/autoencoder.recs" --label autoencoder \
    --recs "$work/seed-$first/popularity.recs" --label most-popular \
    --recs "$work/seed-$first/ease.recs" --label EASE --plot "$work/plot.png" > /dev/null

python3 - $(for s in $seeds; do echo "$work/seed-$s/metrics.json"; done) <<'PY'
import json, statistics, sys
runs = [json.load(open(path)) for path in sys.argv[1:]]
print(f"\nMovieLens-100K, held-out users (150 test users), mean ± std over {len(runs)} seeds")
print(f"{'system':<14} {'Recall@20':>16} {'Recall@50':>16} {'NDCG@100':>16}")
for s, system in enumerate(runs[0]):
    def value(k, metric):
        values = [next(m[metric] for m in run[s]["metrics"] if m["k"] == k) for run in runs]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.4f} ± {spread:.4f}"
    print(f"{system['system']:<14} {value(20, 'recall'):>16} {value(50, 'recall'):>16} {value(100, 'ndcg'):>16}")
PY
echo "plot: $work/plot.png"
