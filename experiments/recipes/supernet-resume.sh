#!/usr/bin/env bash
# A long supernet run that survives being killed at the end of every working session: trains
# EXPERIMENT into RUN_DIR, checkpointed every 200 steps, resuming wherever the folder left off; a
# run folder without a checkpoint is first seeded from WIP_DIR, the work-in-progress checkpoint
# committed in the repository.
# Usage: supernet-resume.sh NAS_BINARY DATA RUN_DIR EXPERIMENT WIP_DIR
set -euo pipefail
nas="$1"; data="$2"; run="$3"; experiment="$4"; wip="$5"
if [ ! -e "$run/latest" ] && [ -e "$wip/latest" ]; then
    mkdir -p "$run"
    cp -r "$wip/." "$run/"
fi
exec "$nas" train --experiment "$experiment" --data "$data" --out "$run" --resume \
    --checkpoint-every 200 --quiet
