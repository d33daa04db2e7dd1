#!/usr/bin/env bash
# The Spark example end to end: fetches MovieLens-100K, installs the destiny package with
# Spark (once), and runs examples/spark/movielens.py on local Spark.
set -euo pipefail
cd "$(dirname "$0")/../.."
ratings=$(scripts/fetch-movielens.sh)
if ! python3 -c "import destiny.spark, pyspark, pandas" 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check "./crates/destiny-python[spark]"
fi
exec python3 examples/spark/movielens.py "$ratings" work-data/spark
