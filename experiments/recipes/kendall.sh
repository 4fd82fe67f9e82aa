#!/usr/bin/env bash
# Does the supernet rank subnets the way fine-tuning does? For every arch JSON in ARCH_DIR:
# top-1 with inherited weights (`nas eval`, 5,000 held-out validation images) and after a short
# fine-tuning (5 epochs, one-cycle, lr 0.1: the fine-tuning recipe, shortened), then the Kendall
# tau between the two columns. Resumable: finished archs are skipped, a killed fine-tuning resumes
# from its last checkpoint. Usage: kendall.sh NAS_BINARY DATA ARCH_DIR OUT_DIR
set -euo pipefail
nas="$1"; data="$2"; archs="$3"; out="$4"
epochs=5
mkdir -p "$out"
csv="$out/inherited-vs-finetuned.csv"
[ -f "$csv" ] || echo "id,inherited_val_top1,finetuned_val_top1,epochs,finetune_seconds" > "$csv"
for arch in "$archs"/*.json; do
    id="$(basename "$arch" .json)"
    grep -q "^$id," "$csv" && continue
    inherited="$("$nas" eval --arch "$arch" --data "$data" --split val | sed -n 's/^top-1 \([0-9.]*\)%.*/\1/p')"
    run="$out/ft-$id"
    resume=()
    [ -f "$run/latest" ] && resume=(--resume)
    t0=$SECONDS
    "$nas" finetune --arch "$arch" --data "$data" --epochs "$epochs" --schedule one-cycle --lr 0.1 \
        --checkpoint-every 200 --quiet --out "$run" "${resume[@]}" > /dev/null
    finetuned="$(tail -1 "$run/metrics.csv" | cut -d, -f5 | awk '{printf "%.2f", 100 * $1}')"
    echo "$id,$inherited,$finetuned,$epochs,$((SECONDS - t0))" >> "$csv"
done
# Kendall tau-a over all pairs (ties count as neither concordant nor discordant).
tail -n +2 "$csv" | awk -F, '{a[NR] = $2; b[NR] = $3} END {
    for (i = 1; i <= NR; i++) for (j = i + 1; j <= NR; j++) {
        s = (a[i] - a[j]) * (b[i] - b[j]); if (s > 0) c++; else if (s < 0) d++ }
    printf "Kendall tau (n=%d): %.3f (%d concordant, %d discordant pairs)\n", NR, (c - d) / (NR * (NR - 1) / 2), c, d }' \
    | tee "$out/tau.txt"
