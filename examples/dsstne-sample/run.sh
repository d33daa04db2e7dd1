#!/usr/bin/env bash
# DSSTNE's MovieLens sample (samples/movielens/run_movielens_sample.sh in DSSTNE's
# repository), step for step and flag for flag, with Destiny's commands in place of DSSTNE's
# binaries: generateNetCDF is `destiny convert`, train `destiny train`, predict
# `destiny predict`.
#
#   examples/dsstne-sample/run.sh RATINGS [FOLDER]
#
# RATINGS is a MovieLens ratings file (ml-20m's ratings.csv, or MovieLens-100K as
# scripts/fetch-movielens.sh fetches it); everything is written into FOLDER (default
# dsstne-sample), the recommendations into FOLDER/recs. DESTINY names the command to run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ratings=$(realpath "$1")
destiny=${DESTINY:-destiny}
mkdir -p "${2:-dsstne-sample}"
cd "${2:-dsstne-sample}"

awk -f "$here/to_dsstne.awk" "$ratings" > ratings

"$destiny" convert -d gl_input  -i ratings -o gl_input.nc  -f features_input  -s samples_input -c
"$destiny" convert -d gl_output -i ratings -o gl_output.nc -f features_output -s samples_input -c

"$destiny" train -c "$here/../movielens/config.json" -i gl_input.nc -o gl_output.nc -n gl.nc -b 256 -e 10

"$destiny" predict -b 256 -d gl -i features_input -o features_output -k 10 -n gl.nc -f ratings -s recs -r ratings
