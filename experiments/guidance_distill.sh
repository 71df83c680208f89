#!/usr/bin/env bash
# The default model with its image guidance distilled into the UNet (step 4c of experiments/train_default.sh): one
# UNet pass per denoising step instead of two (`train_ffa.py --guidance_distillation_scale 1.5`: the student learns
# the teacher's `labels_only + 1.5 (full - labels_only)`; the teacher is a frozen copy of the starting model), on
# the kinds of data of step 3n, fewer rows and copies (548 rows: 240 of 600 phantom eyes, 120 phantom UWF eyes at 768
# px, the 84 angiogram pairs and the 80 UWF ones once, the 8 real SLO pairs 3 times; the teacher gives the targets,
# so only the inputs' spread matters, and caching takes ~2 s a row), then the distilled model and BASELINE (the
# starting model) on the same checks: held-out phantom eyes, the 36 held-out real angiograms, the real photos over
# five seeds (experiments/guidance_seeds.sh at each model's default image guidance) and the latency, run in turns.
# Results: experiments/results/guidance_distill.md.
# About 17 min caching + 43 min training (5.1 s a step) + 25 min checks on the 2-core CPU. Run it with
# BASELINE=assets/ffa-default before shipping (as on 2026-12-02: step 3n with step 4b's light decoder); after
# shipping, give the model before distillation as BASELINE.
#   bash experiments/guidance_distill.sh      (OUT=runs/guidance-distill BASELINE=assets/ffa-default STEPS=500)
set -euo pipefail
OUT=${OUT:-runs/guidance-distill}
BASELINE=${BASELINE:-assets/ffa-default}
STEPS=${STEPS:-500}
source experiments/check_data.sh
A=data/angiogram-pairs-pit
[ -d $A ] || python train/make_angiogram_pairs.py --input ../shared/data/ffa_real --split train --output_dir $A
L=data/uwf-angiogram-pairs-slolids-768
[ -d $L ] || python train/make_angiogram_pairs.py --layout uwf_triplets --input ../shared/data/uwf_slo_ffa \
  --resolution 768 --split train --lid_draws 10 --lid_style slo --output_dir $L
R=data/uwf-slo-pairs-768-registered-local
[ -d $R ] || python train/make_angiogram_pairs.py --layout uwf_triplets --input ../shared/data/uwf_slo_ffa \
  --resolution 768 --split train --real_slo_source --register --local_registration --output_dir $R
[ -d data/phantom-uwf-768 ] || python train/make_phantom_dataset.py --resolution 768 --phases arterial early mid late \
  --num_samples 120 --modalities uwf_slo --seed 31 --output_dir data/phantom-uwf-768
[ -f "$OUT/model_index.json" ] || python train/train_ffa.py --pretrained_ffa_model "$BASELINE" \
  --guidance_distillation_scale 1.5 --train_full_unet \
  --train_data_dir data/phantom-vae600 data/phantom-uwf-768 $A $L $R $R $R --max_train_samples 240 \
  --target_image_column ffa_arterial,ffa_early,ffa_mid,ffa_late \
  --phase_column ffa_arterial_seconds,ffa_early_seconds,ffa_mid_seconds,ffa_late_seconds \
  --eye_id_column eye_id --alignment_loss_weight 0.1 --cache_latents --random_flip --random_rotation 10 \
  --random_scale 0.1 --color_jitter 0.3 --use_ema --ema_decay 0.995 --train_batch_size 8 --learning_rate 1e-4 \
  --lr_scheduler constant_with_warmup --lr_warmup_steps 50 --max_train_steps "$STEPS" --checkpointing_steps 250 \
  --checkpoints_total_limit 1 --output_dir "$OUT"
PHASES=(--target_image_column ffa_arterial,ffa_early,ffa_mid,ffa_late
        --phase_column ffa_arterial_seconds,ffa_early_seconds,ffa_mid_seconds,ffa_late_seconds)
for RUN in baseline=$BASELINE distilled=$OUT; do  # a check whose results exist is not run again
  MODEL=${RUN#*=} E=$OUT/eval-${RUN%%=*}
  SCALE=$(python -c "import json; print(json.load(open('$MODEL/model_index.json'))['default_image_guidance_scale'])")
  [ -f "$E/phantom/metrics.json" ] || python train/evaluate.py --model "$MODEL" --train_data_dir data/phantom-test \
    --max_samples 60 "${PHASES[@]}" --per_modality --baselines inverted_green --output_dir "$E/phantom"
  [ -f "$E/angio/metrics.json" ] || python train/evaluate.py --model "$MODEL" --train_data_dir \
    data/angiogram-pairs-test --split test "${PHASES[@]}" --baselines inverted_green --output_dir "$E/angio"
  [ -f "$E/seeds/guidance_seeds.md" ] || MODEL=$MODEL OUT=$E/seeds SCALES=$SCALE bash experiments/guidance_seeds.sh
done
for TURN in 1 2; do
  for RUN in baseline=$BASELINE distilled=$OUT; do
    python benchmarks/bench_default_latency.py --model "${RUN#*=}" --repeats 15 \
      --output "$OUT/latency-${RUN%%=*}-$TURN.json" | tail -n 3
  done
done
