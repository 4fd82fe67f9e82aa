#!/usr/bin/env bash
# Fit a supernet's accuracy predictor and refine it as NSGANetV2 does: 300 uniform subnets
# measured on the supernet, then ROUNDS times: search with the current predictor (its front's 12
# spread members measured on the same validation images), and refit with 40 front members of every search
# so far added. A last search measures the final predictor's front. Every measurement is on
# 2,000 held-out validation images (a seeded sample of the split) after BatchNorm recalibration
# on 2,000 training images. Measurements are cached beside PREDICTOR (`.samples.jsonl`), so a
# killed run restarted with the same arguments re-measures nothing it had.
# Usage: predictor.sh NAS_BINARY DATA SUPERNET PREDICTOR WORK_DIR ROUNDS [nas search flags...]
set -euo pipefail
nas="$1"; data="$2"; supernet="$3"; predictor="$4"; work="$5"; rounds="$6"
shift 6
mkdir -p "$work"
measure=(--data "$data" --calib 2000 --val-images 2000)
build() { "$nas" predictor build --supernet "$supernet" "${measure[@]}" --samples 300 --hidden 128,128 --out "$predictor" "$@"; }
# The search measures its front on the supernet run's own validation split (no --data: with one,
# it would score the test split, which is kept for final figures).
search() { "$nas" search "$@" --supernet "$supernet" --predictor "$predictor" --calib 2000 --val-images 2000 --measure 12 --no-plot --force; }
build | tee "$work/build-0.txt"
refine=()
for r in $(seq 1 "$rounds"); do
    search "${@}" --out "$work/search-$r" | tee "$work/search-$r.txt"
    refine+=(--refine "$work/search-$r")
    build "${refine[@]}" | tee "$work/build-$r.txt"
done
search "${@}" --out "$work/search-final" | tee "$work/search-final.txt"
