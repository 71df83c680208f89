#!/usr/bin/env bash
# Steps vs quality, to choose the default sampling settings (README "Evaluation"): 9 held-out rows (3 eyes x 3
# modalities), early and late phase, three schedulers, 2 to 50 steps, one guidance branch; then the guidance
# settings at the chosen step count (default: the checkpoint's own scheduler and steps; SCHEDULER=, SAMPLING_STEPS= to change).
# Run on an otherwise idle machine: it also times each setting. A finished steps table ($OUT/steps) is kept.
set -euo pipefail
MODEL=${MODEL:-assets/ffa-default}
OUT=${OUT:-runs/sweep}
COMMON=(--model "$MODEL" --train_data_dir data/phantom-test --max_samples 9 --target_image_column ffa_early,ffa_late
        --phase_column ffa_early_seconds,ffa_late_seconds --baselines)
[ -f "$OUT/steps/metrics.json" ] || python train/evaluate.py "${COMMON[@]}" --image_guidance_scale 1 \
  --label_guidance_scale 1 --steps_sweep 2 4 8 16 32 50 --sweep_schedulers ddim dpm++ unipc --output_dir "$OUT/steps"
RUNS=()
SAMPLING=(${SCHEDULER:+--scheduler "$SCHEDULER"} ${SAMPLING_STEPS:+--num_inference_steps "$SAMPLING_STEPS"})
for GUIDANCE in "1 1" "1 1.5" "1 2.5" "1.5 1.5" "1.5 1" "2 1" "3 1"; do
  set -- $GUIDANCE
  RUNS+=("image $1, label $2=$OUT/guidance-$1-$2")
  python train/evaluate.py "${COMMON[@]}" ${SAMPLING[@]+"${SAMPLING[@]}"} --image_guidance_scale "$1" \
    --label_guidance_scale "$2" --output_dir "$OUT/guidance-$1-$2"
done
python experiments/summarize.py "${RUNS[@]}" > "$OUT/guidance.md"
cat "$OUT/guidance.md"
