#!/usr/bin/env bash
# The long supernet run of the cifar space (sandwich rule, 40 epochs, cosine; now the shipped
# supernet), resumable session after session: see supernet-resume.sh.
# Usage: supernet-long.sh NAS_BINARY DATA RUN_DIR
set -euo pipefail
exec "$(dirname "$0")/supernet-resume.sh" "$1" "$2" "$3" experiments/recipes/cifar10-long.toml experiments/wip/cifar10-long
