#!/usr/bin/env bash
# Image guidance over five seeds on the real photos: the real-photo check (`real_photo_check.py --seed S`) and the
# registered real UWF pairs (`train/evaluate.py --seed S` on data/uwf-registered, which experiments/real_uwf.sh
# builds) for seeds 0-4 at each image guidance scale, then one table (`experiments/seed_spread.py`). The per-frame
# figures of one seed are noise with 3 UWF test eyes; counts over seeds are not. About 4 min per scale on the 2-core
# CPU. Results: experiments/results/guidance_seeds.md.
#   bash experiments/guidance_seeds.sh                 (MODEL=assets/ffa-default OUT=runs/guidance-seeds SCALES="...")
# SAMPLING_STEPS=N runs every scale at N denoising steps (default: the checkpoint's own; STEPS, in the scripts that
# call this one, is their training steps).
set -euo pipefail
MODEL=${MODEL:-assets/ffa-default}
OUT=${OUT:-runs/guidance-seeds}
SCALES=${SCALES:-3 2.5 2 1.5 1.25 1}
STEP_FLAGS=()
[ -z "${SAMPLING_STEPS:-}" ] || STEP_FLAGS=(--num_inference_steps "$SAMPLING_STEPS")
[ -d data/uwf-registered ] || { echo "data/uwf-registered is missing: run experiments/real_uwf.sh first" >&2; exit 1; }
RUNS=()
for SCALE in $SCALES; do
  for SEED in 0 1 2 3 4; do
    python experiments/real_photo_check.py --model "$MODEL" --seed "$SEED" --image_guidance_scale "$SCALE" \
      "${STEP_FLAGS[@]}" --output_dir "$OUT/g$SCALE/rpc-seed$SEED"
    python train/evaluate.py --model "$MODEL" --train_data_dir data/uwf-registered --split test \
      --target_image_column target_image --phase_column phase --baselines --seed "$SEED" \
      --image_guidance_scale "$SCALE" "${STEP_FLAGS[@]}" --output_dir "$OUT/g$SCALE/eval-seed$SEED"
  done
  RUNS+=("image guidance $SCALE=$OUT/g$SCALE")
done
python experiments/seed_spread.py "${RUNS[@]}" | tee "$OUT/guidance_seeds.md"
