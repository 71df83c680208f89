#!/usr/bin/env bash
# The checks of a model's ultra-widefield frames that experiments/uwf512_probe.sh and uwf512_mixed.sh run:
#   bash experiments/check_uwf_model.sh MODEL_DIR NAME     (writes $OUT/rpc-NAME and $OUT/eval-NAME-*)
# the real-photo check, the paired metrics on the 3 held-out UWF test triplets (registered and as acquired, as
# experiments/real_uwf.sh evaluates them; an output drawn larger is shrunk to the 256 px frame) and the 36 held-out
# real angiograms with rendered photos (CFP, 256 px). Needs data/uwf-registered, data/uwf-as-acquired and
# data/angiogram-pairs-test (uwf512_probe.sh makes them).
set -euo pipefail
MODEL=$1 NAME=$2 OUT=${OUT:-runs}
python experiments/real_photo_check.py --model "$MODEL" --output_dir "$OUT/rpc-$NAME"
for DATA in registered as-acquired; do
  python train/evaluate.py --model "$MODEL" --train_data_dir "data/uwf-$DATA" --split test \
    --target_image_column target_image --phase_column phase --baselines --output_dir "$OUT/eval-$NAME-$DATA"
done
python train/evaluate.py --model "$MODEL" --train_data_dir data/angiogram-pairs-test --split test \
  --target_image_column ffa_arterial,ffa_early,ffa_mid,ffa_late \
  --phase_column ffa_arterial_seconds,ffa_early_seconds,ffa_mid_seconds,ffa_late_seconds --baselines \
  --output_dir "$OUT/eval-$NAME-angio"
