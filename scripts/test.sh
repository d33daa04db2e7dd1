#!/usr/bin/env bash
# Runs Destiny's test suite. Installs what the tests need first: the NVRTC wheel (so that
# every CUDA kernel is compiled for sm_90 on a machine without a GPU) and a font for plots.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check nvidia-cuda-nvrtc==13.0.88
nvrtc_lib=$(python3 - <<'PY'
import importlib.util, os
spec = importlib.util.find_spec("nvidia")
print(os.path.join(list(spec.submodule_search_locations)[0], "cu13", "lib"))
PY
)
export LD_LIBRARY_PATH="$nvrtc_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export DESTINY_REQUIRE_NVRTC=1

if [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
    if command -v apt-get >/dev/null; then
        (apt-get install -y -qq fonts-dejavu-core >/dev/null 2>&1 ||
            (apt-get update -qq >/dev/null && apt-get install -y -qq fonts-dejavu-core >/dev/null)) ||
            echo "warning: could not install fonts-dejavu-core; plot tests will fail" >&2
    fi
fi

# MovieLens-100K for the test on real data.
export DESTINY_ML100K="$PWD/$(scripts/fetch-movielens.sh)"
export DESTINY_REQUIRE_DATA=1

# The Python tools the tests use, installed once: the wheel's build and its tests (pytest, a
# local Spark), and moto's S3 server that the object-storage tests start on the loopback.
python_tools=(maturin pyarrow "pyspark>=3.5" "pandas>=2.2,<3" pytest numpy "moto[server]>=5" boto3)
if ! python3 -c "import maturin, pyarrow, pyspark, pandas, pytest, numpy, moto.server, boto3" 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check "${python_tools[@]}"
fi
export DESTINY_REQUIRE_S3=1

# DSSTNE's NetCDF datasets are read through the netCDF C library (the `netcdf` feature).
if ! pkg-config --exists netcdf 2>/dev/null && command -v apt-get >/dev/null; then
    (apt-get install -y -qq libnetcdf-dev pkg-config >/dev/null 2>&1 ||
        (apt-get update -qq >/dev/null && apt-get install -y -qq libnetcdf-dev pkg-config >/dev/null)) ||
        echo "warning: could not install libnetcdf-dev; the NetCDF tests are left out" >&2
fi
features=()
if pkg-config --exists netcdf 2>/dev/null; then
    features=(--features destiny-cli/netcdf,destiny-data/netcdf)
fi

cargo test --workspace --release "${features[@]}" "$@"

# The Python package and destiny.spark: builds the wheel from this tree (reusing cargo's
# build) and compares it with the command.
python3 -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps \
    --force-reinstall ./crates/destiny-python
DESTINY_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/destiny" \
    python3 -m pytest -q -p no:cacheprovider crates/destiny-python/tests
