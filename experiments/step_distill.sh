#!/usr/bin/env bash
# The default model in one denoising step instead of two: progressive distillation (Salimans & Ho 2022, one
# halving; `train_ffa.py --step_distillation`): a frozen copy of the shipped model is the teacher, and at each of
# the student's timesteps the target is the prediction with which one DDIM step lands where two of the teacher's
# steps do (its default 2 trailing steps, 999 -> 499 -> 0, become one, 999 -> 0). Half the UNet passes: for the
# latency on the AVX2-only instance in its slow minutes (a default call of step 4c 1.03-1.20 s median there on
# 2026-12-02 12:31-12:37, against 0.74-0.80 s in its fast ones). The data and recipe of step 4c
# (experiments/guidance_distill.sh, whose data it reuses), then the student's checks: latency in turns with
# BASELINE, the real photos over five seeds, the 36 held-out real angiograms and the held-out phantom eyes (BASELINE's
# own are those of `runs/guidance-distill/eval-distilled` for the shipped step 4c).
# About 17 min caching + 30 min training + 25 min checks on the 2-core CPU.
# Results: experiments/results/step_distill.md.
#   bash experiments/step_distill.sh      (OUT=runs/step-distill BASELINE=assets/ffa-default STEPS=300)
# To train a finished run on (a larger STEPS), copy its checkpoint-N folder into a new OUT: training resumes
# from it (the learning rate is constant, so N + more steps is one longer run).
set -euo pipefail
OUT=${OUT:-runs/step-distill}
BASELINE=${BASELINE:-assets/ffa-default}
STEPS=${STEPS:-300}
source experiments/check_data.sh
A=data/angiogram-pairs-pit
L=data/uwf-angiogram-pairs-slolids-768
R=data/uwf-slo-pairs-768-registered-local
for D in $A $L $R data/phantom-uwf-768; do
  [ -d $D ] || { echo "$D is missing: experiments/guidance_distill.sh builds it" >&2; exit 1; }
done
[ -f "$OUT/model_index.json" ] || python train/train_ffa.py --pretrained_ffa_model "$BASELINE" \
  --step_distillation --train_full_unet \
  --train_data_dir data/phantom-vae600 data/phantom-uwf-768 $A $L $R $R $R --max_train_samples 240 \
  --target_image_column ffa_arterial,ffa_early,ffa_mid,ffa_late \
  --phase_column ffa_arterial_seconds,ffa_early_seconds,ffa_mid_seconds,ffa_late_seconds \
  --eye_id_column eye_id --alignment_loss_weight 0.1 --cache_latents --random_flip --random_rotation 10 \
  --random_scale 0.1 --color_jitter 0.3 --use_ema --ema_decay 0.995 --train_batch_size 8 --learning_rate 1e-4 \
  --lr_scheduler constant_with_warmup --lr_warmup_steps 30 --max_train_steps "$STEPS" --checkpointing_steps 150 \
  --checkpoints_total_limit 1 --resume_from_checkpoint latest --output_dir "$OUT"
for TURN in 1 2; do
  for RUN in baseline=$BASELINE distilled=$OUT; do
    python benchmarks/bench_default_latency.py --model "${RUN#*=}" --repeats 15 \
      --output "$OUT/latency-${RUN%%=*}-$TURN.json" | tail -n 3
  done
done
E=$OUT/eval-distilled
[ -f "$E/seeds/guidance_seeds.md" ] || MODEL=$OUT OUT=$E/seeds SCALES=1 bash experiments/guidance_seeds.sh
PHASES=(--target_image_column ffa_arterial,ffa_early,ffa_mid,ffa_late
        --phase_column ffa_arterial_seconds,ffa_early_seconds,ffa_mid_seconds,ffa_late_seconds)
[ -f "$E/angio/metrics.json" ] || python train/evaluate.py --model "$OUT" --train_data_dir data/angiogram-pairs-test \
  --split test "${PHASES[@]}" --baselines inverted_green --output_dir "$E/angio"
[ -f "$E/phantom/metrics.json" ] || python train/evaluate.py --model "$OUT" --train_data_dir data/phantom-test \
  --max_samples 60 "${PHASES[@]}" --per_modality --baselines inverted_green --output_dir "$E/phantom"
