#!/usr/bin/env bash
# The long supernet run of the cifar-fused space (experiments/recipes/cifar-fused.toml),
# resumable session after session: see supernet-resume.sh.
# Usage: supernet-fused.sh NAS_BINARY DATA RUN_DIR
set -euo pipefail
exec "$(dirname "$0")/supernet-resume.sh" "$1" "$2" "$3" experiments/recipes/cifar-fused.toml experiments/wip/cifar-fused
