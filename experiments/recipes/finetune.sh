#!/usr/bin/env bash
# Fine-tuning recipe comparison (README "Training recipe"): the top member of the default
# search's front, fine-tuned from the shipped supernet with each recipe for the same data budget
# (4 epochs over the same seeded 15,000 of the supernet's training images), validated on the
# supernet's 5,000 held-out training images. Usage: finetune.sh NAS_BINARY DATA OUT_DIR
set -euo pipefail
nas="$1"; data="$2"; out="$3"
arch="runs/cifar-stm32f746-sram256k-flash1024k-seed0/pareto.json#2742"
[ -f "${arch%#*}" ] || "$nas" search --sram 256k > /dev/null
common=(--arch "$arch" --data "$data" --epochs 4 --max-train-images 15000 --quiet --checkpoint-every 0)
run() {
    local name="$1"; shift
    [ -f "$out/$name/metrics.csv" ] && [ "$(wc -l < "$out/$name/metrics.csv")" -ge 5 ] && return 0
    local t0=$SECONDS
    "$nas" finetune "${common[@]}" --out "$out/$name" --resume "$@" > /dev/null
    echo "$name,$((SECONDS - t0)),$(tail -1 "$out/$name/metrics.csv")" >> "$out/summary.csv"
}
run cosine-lr0.02 --lr 0.02
run cosine-lr0.05 --lr 0.05
run one-cycle-lr0.05 --schedule one-cycle --lr 0.05
run batch128-lr0.04 --batch-size 128 --lr 0.04
run ls0.2 --lr 0.02 --label-smoothing 0.2
run kd0.5 --lr 0.02 --kd-weight 0.5
run cosine-lr0.1 --lr 0.1
run one-cycle-lr0.1 --schedule one-cycle --lr 0.1
run ema0.999-lr0.05 --lr 0.05 --ema-decay 0.999
run cosine-lr0.2 --lr 0.2
run one-cycle-lr0.2 --schedule one-cycle --lr 0.2
