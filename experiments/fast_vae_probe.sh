#!/usr/bin/env bash
# Probe (not shipped): the default model with a faster VAE distilled from its own, for the slower instances of the
# 2-core machine, where a default call takes 1.4-1.9 s and the VAE 0.8-1.0 s of it (README, "What it does not do
# yet"). The VAE of experiments/fast_vae.json (16 / 32 / 64 channels, no attention; the same 4 latent channels and 4x
# downsampling) learns the shipped VAE's latent space (`train_vae.py --teacher_vae_model_name_or_path`), so the UNet,
# condition encoder and disease embedding are kept as they are. Then the shipped model and the one with the
# distilled VAE on the same checks: held-out phantom eyes (inverted green only; pix2pix does not depend on the VAE),
# 12 of the 36 held-out real angiograms, the real photos, and the latency, run in turns.
# About 23 min training + 25 min checks on the 2-core CPU. Results: experiments/results/fast_vae_probe.md.
#   bash experiments/fast_vae_probe.sh          (OUT=runs/fast-vae STEPS=500)
set -euo pipefail
OUT=${OUT:-runs/fast-vae}
STEPS=${STEPS:-500}
FFA=../shared/data/ffa_real
source experiments/check_data.sh
[ -d "$OUT/vae" ] || python train/train_vae.py --teacher_vae_model_name_or_path assets/ffa-default \
  --teacher_subfolder vae --model_config experiments/fast_vae.json --train_data_dir data/phantom-vae600 \
  --image_column source_image ffa_arterial ffa_early ffa_mid ffa_late \
  --image_dir "$FFA/disease_diagnosis" "$FFA/phase_identification/train/arterial_phase" \
  "$FFA/phase_identification/train/venous_phase" ../shared/data/uwf_slo_ffa/train \
  --resolution 256 --crop_size 128 --train_batch_size 8 --learning_rate 1e-3 --lr_scheduler cosine \
  --lr_warmup_steps 30 --max_train_steps "$STEPS" --validation_fraction 0.01 --checkpointing_steps 300 \
  --checkpoints_total_limit 1 --output_dir "$OUT"
python -c "
from diffusers import AutoencoderKL
from ffa_pipeline import FFADiffusionPipeline
vae = AutoencoderKL.from_pretrained('$OUT/vae')
FFADiffusionPipeline.from_pretrained('assets/ffa-default', vae=vae).save_pretrained('$OUT/pipeline')"
PHASES=(--target_image_column ffa_arterial,ffa_early,ffa_mid,ffa_late
        --phase_column ffa_arterial_seconds,ffa_early_seconds,ffa_mid_seconds,ffa_late_seconds)
for RUN in default=assets/ffa-default fast=$OUT/pipeline; do  # a check whose results exist is not run again
  MODEL=${RUN#*=} E=$OUT/eval-${RUN%%=*}
  [ -f "$E/phantom/metrics.json" ] || python train/evaluate.py --model "$MODEL" --train_data_dir data/phantom-test \
    --max_samples 60 "${PHASES[@]}" --per_modality --baselines inverted_green --output_dir "$E/phantom"
  [ -f "$E/angio/metrics.json" ] || python train/evaluate.py --model "$MODEL" --train_data_dir \
    data/angiogram-pairs-test --split test --max_samples 12 "${PHASES[@]}" --baselines inverted_green \
    --output_dir "$E/angio"
  [ -f "$E/rpc/real_photo_check.json" ] || python experiments/real_photo_check.py --model "$MODEL" \
    --output_dir "$E/rpc"
  [ -f "$E/uwf-registered/metrics.json" ] || python train/evaluate.py --model "$MODEL" --train_data_dir \
    data/uwf-registered --split test --target_image_column target_image --phase_column phase --baselines \
    --output_dir "$E/uwf-registered"
done
for TURN in 1 2; do
  for RUN in default=assets/ffa-default fast=$OUT/pipeline; do
    python benchmarks/bench_default_latency.py --model "${RUN#*=}" --repeats 15 \
      --output "$OUT/latency-${RUN%%=*}-$TURN.json" | tail -n 3
  done
done
