#!/usr/bin/env bash
# The long supernet run of the cifar-fused space (experiments/recipes/cifar-fused.toml), checkpointed
# every 200 steps so it survives being killed at the end of every working session. Resumes
# wherever its run folder left off; a run folder missing here is seeded from the
# work-in-progress checkpoint committed in the repository.
# Usage: supernet-fused.sh NAS_BINARY DATA RUN_DIR
set -euo pipefail
nas="$1"; data="$2"; run="$3"
wip="experiments/wip/cifar-fused"
if [ ! -e "$run/latest" ] && [ -e "$wip/latest" ]; then
    mkdir -p "$run"
    cp -r "$wip/." "$run/"
fi
exec "$nas" train --experiment experiments/recipes/cifar-fused.toml --data "$data" --out "$run" --resume \
    --checkpoint-every 200 --quiet
