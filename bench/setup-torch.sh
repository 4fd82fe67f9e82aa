#!/usr/bin/env bash
# Installs PyTorch for the benchmark twin (bench/torch_twin.py) into a private virtual
# environment, by default ~/.cache/tinynas-torch. Only `nas bench train --against-torch` needs it;
# the tests never do. From PyPI: on Linux x86_64 that wheel carries the CUDA libraries too (a few
# GB); where https://download.pytorch.org is reachable, TORCH_INDEX_URL=.../whl/cpu installs the
# much smaller CPU-only wheel instead.
set -euo pipefail
venv="${1:-$HOME/.cache/tinynas-torch}"
python3 -m venv "$venv"
if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check --index-url "$TORCH_INDEX_URL" torch
else
    "$venv/bin/pip" install --quiet --disable-pip-version-check torch
fi
"$venv/bin/python" -c "import torch; print('PyTorch', torch.__version__, 'installed in', '$venv')"
