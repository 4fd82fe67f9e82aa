#!/usr/bin/env bash
# Supernet recipe comparison (README "Training recipe"): the sandwich rule on the cifar space
# from scratch with each recipe for the same data budget (2 epochs over the same seeded 10,000
# training images), validated (smallest / largest subnet) on the 5,000 held-out training images.
# Usage: supernet.sh NAS_BINARY DATA OUT_DIR
set -euo pipefail
nas="$1"; data="$2"; out="$3"
mkdir -p "$out"
run() {
    local name="$1" edit="$2"; shift 2
    [ -f "$out/$name/metrics.csv" ] && [ "$(wc -l < "$out/$name/metrics.csv")" -ge 3 ] && return 0
    sed -e "$edit" experiments/cifar10.toml > "$out/$name.toml"
    local t0=$SECONDS
    "$nas" train --experiment "$out/$name.toml" --data "$data" --epochs 2 --max-train-images 10000 \
        --quiet --checkpoint-every 50 --out "$out/$name" --resume "$@" > /dev/null
    echo "$name,$((SECONDS - t0)),$(tail -1 "$out/$name/metrics.csv")" >> "$out/summary.csv"
}
run cosine-lr0.05 's/^lr = .*/lr = 0.05/'
run one-cycle-lr0.1 's/^lr = .*/lr = 0.1\nschedule = "one-cycle"/'
run batch128-lr0.1 's/^lr = .*/lr = 0.1/; s/^batch_size = .*/batch_size = 128/'
run ls0.2 's/^label_smoothing = .*/label_smoothing = 0.2/'
