#!/usr/bin/env bash
# Table 1 on the CPU default data (README): every model of the paper's Table 1, the paper's
# head and loss, the old ground truth, and seeds 0-2 of the transformer and the CNN, all at STEPS steps, two
# runs at a time with one thread each; then one `xmatch eval` of all runs on the test volumes
# beside the no-image baselines. Needs `make pretrain-data` and the store of `make pretrain`.
#   bash pipelines/table1.sh [STEPS]       # about 12 min per pair of runs at 600 steps
set -euo pipefail
STEPS=${1:-600}
BIN=${BIN:-.venv/bin}
OUT=runs/table1_${STEPS}
CFG=pipelines/pretrain_cpu.yaml
$BIN/drrgen build --config pipelines/pretrain_cpu_store_peak.yaml --ct-dir data/pretrain_ct \
  --out data/pretrain_peak.zarr --no-progress --workers 2
run() {  # name, overrides...
  local name=$1; shift
  $BIN/xmatch pretrain --config $CFG run_dir=$OUT/$name train.steps=$STEPS train.threads=1 \
    train.val_every=$((STEPS / 4)) "$@" > $OUT/$name.log 2>&1
}
mkdir -p $OUT
run transformer & run cnn model.name=cnn & wait
run superglue model.name=superglue & run loftr model.name=loftr & wait
run transformer_mp model.name=transformer_mp & run transformer_cosine model.head=cosine & wait
run transformer_seed1 train.seed=1 & run transformer_seed2 train.seed=2 & wait
run cnn_seed1 model.name=cnn train.seed=1 & run cnn_seed2 model.name=cnn train.seed=2 & wait
run transformer_peak "data.stores=[data/pretrain_peak.zarr]" train.threads=2
$BIN/xmatch eval --store data/pretrain.zarr --out $OUT/eval \
  $(for r in transformer transformer_seed1 transformer_seed2 cnn cnn_seed1 cnn_seed2 superglue loftr transformer_mp \
    transformer_cosine; do echo --run $OUT/$r; done)
$BIN/xmatch eval --store data/pretrain_peak.zarr --out $OUT/eval_peak --run $OUT/transformer_peak
