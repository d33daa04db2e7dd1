#!/usr/bin/env bash
# Destiny's main job: scripts/quality.sh on MovieLens-100K (see there).
exec "$(dirname "$0")/quality.sh" movielens "$@"
