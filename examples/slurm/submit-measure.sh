#!/usr/bin/env bash
# Submit the sharded measurement (an array of SHARDS tasks) and the merge+fit job that waits for
# all of them: SUPERNET=runs/sn OUT=runs/sn.predictor.json SHARDS=16 ./submit-measure.sh
# Every variable the two scripts read (NAS, SAMPLES, MEASURE_FLAGS, FIT_FLAGS) is passed on.
set -euo pipefail
: "${SUPERNET:?set SUPERNET}" "${OUT:?set OUT}" "${SHARDS:?set SHARDS}"
here="$(cd "$(dirname "$0")" && pwd)"
export SUPERNET OUT SHARDS
array=$(sbatch --parsable --export=ALL --array="0-$((SHARDS - 1))" "$here/measure-array.sbatch")
array=${array%%;*}
merge=$(sbatch --parsable --export=ALL --dependency="afterok:$array" "$here/merge.sbatch")
echo "measurement array $array ($SHARDS tasks), then merge $merge"
