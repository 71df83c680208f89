#!/usr/bin/env bash
# The default model's evaluation (README "Evaluation"): held-out phantom eyes (seed 1, never trained on), every
# modality and phase, against the inverted green channel and a pix2pix U-Net trained on the same phantom data with
# the same steps and batch size as the diffusion model. About 30 min on 2 cores (5 min with PIX2PIX).
set -euo pipefail
MODEL=${MODEL:-assets/ffa-default}
OUT=${OUT:-runs/eval-default}
[ -d data/phantom-test ] || python train/make_phantom_dataset.py --num_samples 90 --resolution 256 \
  --modalities cfp uwf_slo oct --phases arterial early mid late --seed 1 --output_dir data/phantom-test
PHASES=(--target_image_column ffa_arterial,ffa_early,ffa_mid,ffa_late
        --phase_column ffa_arterial_seconds,ffa_early_seconds,ffa_mid_seconds,ffa_late_seconds)
# The pix2pix baseline does not depend on the diffusion model: PIX2PIX=<its saved folder> (e.g. an earlier run's
# $OUT/main/pix2pix) loads it instead of training it again (~30 min).
if [ -n "${PIX2PIX:-}" ]; then
  PIX2PIX_ARGS=(--pix2pix_checkpoint "$PIX2PIX")
else
  PIX2PIX_ARGS=(--pix2pix_train_data_dir data/phantom-train --pix2pix_steps 2000 --pix2pix_batch_size 8)
fi
# 60 rows = 20 eyes x 3 modalities, 4 phases each: 240 pairs.
python train/evaluate.py --model "$MODEL" --train_data_dir data/phantom-test --max_samples 60 "${PHASES[@]}" \
  --per_modality --baselines inverted_green pix2pix "${PIX2PIX_ARGS[@]}" --output_dir "$OUT/main"
for BY in modality phase; do
  python experiments/summarize.py --by "$BY" "default model=$OUT/main" > "$OUT/main_by_$BY.md"
  cat "$OUT/main_by_$BY.md"
done
