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

cargo test --workspace --release "$@"
