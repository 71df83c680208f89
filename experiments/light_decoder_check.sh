#!/usr/bin/env bash
# The default model with a lighter VAE decoder (step 4b of experiments/train_default.sh): distil the decoder of
# experiments/light_decoder.json (16 / 32 / 64 channels, no attention) from the model's own VAE, keeping its encoder
# (`train_vae.py --teacher_vae_model_name_or_path ... --train_decoder_only`), then the model with it and BASELINE
# (the model without it) on the same checks: held-out phantom eyes (inverted green only; pix2pix does not depend on
# the VAE), the 36 held-out real angiograms, the real photos over five seeds (experiments/guidance_seeds.sh at the
# default image guidance), and the latency, run in turns. Run it with BASELINE=assets/ffa-default before shipping
# (as on 2026-12-02: step 3n); after shipping, give the model without the light decoder as BASELINE and TEACHER.
# About 20 min training + 45 min checks on the 2-core CPU. Results: experiments/results/light_decoder_check.md.
#   bash experiments/light_decoder_check.sh     (OUT=runs/light-decoder BASELINE=TEACHER=assets/ffa-default)
set -euo pipefail
OUT=${OUT:-runs/light-decoder}
BASELINE=${BASELINE:-assets/ffa-default}
TEACHER=${TEACHER:-$BASELINE}
FFA=../shared/data/ffa_real
source experiments/check_data.sh
[ -d "$OUT/vae" ] || python train/train_vae.py --teacher_vae_model_name_or_path "$TEACHER" --teacher_subfolder vae \
  --train_decoder_only --model_config experiments/light_decoder.json --train_data_dir data/phantom-vae600 \
  --image_column source_image ffa_arterial ffa_early ffa_mid ffa_late \
  --image_dir "$FFA/disease_diagnosis" "$FFA/phase_identification/train/arterial_phase" \
  "$FFA/phase_identification/train/venous_phase" ../shared/data/uwf_slo_ffa/train \
  --resolution 256 --crop_size 128 --train_batch_size 8 --learning_rate 1e-3 --lr_scheduler cosine \
  --lr_warmup_steps 30 --max_train_steps 500 --validation_fraction 0.01 --checkpointing_steps 300 \
  --checkpoints_total_limit 1 --output_dir "$OUT"
[ -d "$OUT/pipeline" ] || python -c "
from ffa_pipeline import FFADiffusionPipeline
from ffa_pipeline.light_decoder_vae import load_vae
FFADiffusionPipeline.from_pretrained('$BASELINE', vae=load_vae('$OUT/vae')).save_pretrained('$OUT/pipeline')"
PHASES=(--target_image_column ffa_arterial,ffa_early,ffa_mid,ffa_late
        --phase_column ffa_arterial_seconds,ffa_early_seconds,ffa_mid_seconds,ffa_late_seconds)
for RUN in baseline=$BASELINE light=$OUT/pipeline; do  # a check whose results exist is not run again
  MODEL=${RUN#*=} E=$OUT/eval-${RUN%%=*}
  [ -f "$E/phantom/metrics.json" ] || python train/evaluate.py --model "$MODEL" --train_data_dir data/phantom-test \
    --max_samples 60 "${PHASES[@]}" --per_modality --baselines inverted_green --output_dir "$E/phantom"
  [ -f "$E/angio/metrics.json" ] || python train/evaluate.py --model "$MODEL" --train_data_dir \
    data/angiogram-pairs-test --split test "${PHASES[@]}" --baselines inverted_green --output_dir "$E/angio"
  [ -f "$E/seeds/guidance_seeds.md" ] || MODEL=$MODEL OUT=$E/seeds SCALES=1.5 bash experiments/guidance_seeds.sh
done
for TURN in 1 2; do
  for RUN in baseline=$BASELINE light=$OUT/pipeline; do
    python benchmarks/bench_default_latency.py --model "${RUN#*=}" --repeats 15 \
      --output "$OUT/latency-${RUN%%=*}-$TURN.json" | tail -n 3
  done
done
