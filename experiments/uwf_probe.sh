#!/usr/bin/env bash
# Can real ultra-widefield anatomy at its real scale make the default model follow real UWF SLO images?
# Two full fine-tunes of the default model (not shipped), each followed by the real-photo check and an evaluation on
# the 3 held-out UWF test triplets (their angiograms with rendered SLO-like sources, and with their real SLOs):
#   1. "angiograms": the 8 train angiograms of ../shared/data/uwf_slo_ffa (4 eyes, early + late) with SLO-like
#      sources rendered from them (make_angiogram_pairs.py --layout uwf_triplets), listed 10 times, beside 480
#      phantom rows and the 84 ffa_real angiogram pairs x3; 700 steps (about 25 min caching + 45 min training on
#      the slower 2-core machine of 2026-11-30).
#   2. "real SLO": the same 8 angiograms listed 5 times with rendered sources and 5 times with the eyes' real SLOs
#      (--real_slo_source, as acquired), beside 160 phantom rows and the 84 angiogram pairs; 300 steps (~25 min).
# Results: README, "The default model", and experiments/results/uwf_probe.md.
set -euo pipefail
MODEL=${MODEL:-assets/ffa-default}
OUT=${OUT:-runs}
UWF=../shared/data/uwf_slo_ffa
A=data/angiogram-pairs U=data/uwf-angiogram-pairs S=data/uwf-slo-pairs
PAIRS="python train/make_angiogram_pairs.py --layout uwf_triplets --input $UWF --no_foveal_pit"
[ -d $A ] || python train/make_angiogram_pairs.py --input ../shared/data/ffa_real --split train --no_foveal_pit \
  --output_dir $A
[ -d $U ] || $PAIRS --split train --output_dir $U
[ -d $U-test ] || $PAIRS --split test --output_dir $U-test
[ -d $S ] || $PAIRS --real_slo_source --split train --output_dir $S
[ -d $S-test ] || $PAIRS --real_slo_source --split test --output_dir $S-test
COMMON=(--pretrained_ffa_model "$MODEL" --train_full_unet --target_image_column ffa_arterial,ffa_early,ffa_mid,ffa_late
        --phase_column ffa_arterial_seconds,ffa_early_seconds,ffa_mid_seconds,ffa_late_seconds
        --eye_id_column eye_id --alignment_loss_weight 0.1 --cache_latents --random_flip --random_rotation 10
        --random_scale 0.1 --color_jitter 0.3 --input_representation grey_ridges --use_ema --ema_decay 0.995
        --train_batch_size 8 --learning_rate 2e-4 --lr_scheduler constant_with_warmup --lr_warmup_steps 50
        --checkpoints_total_limit 1)
python train/train_ffa.py "${COMMON[@]}" --train_data_dir data/phantom-train $A $A $A $U $U $U $U $U $U $U $U $U $U \
  --max_train_samples 480 --max_train_steps 700 --checkpointing_steps 350 --output_dir "$OUT/ffa-uwf"
python train/train_ffa.py "${COMMON[@]}" --train_data_dir data/phantom-train $A $U $U $U $U $U $S $S $S $S $S \
  --max_train_samples 160 --max_train_steps 300 --checkpointing_steps 300 --output_dir "$OUT/ffa-uwf-slo"
for RUN in "$MODEL" "$OUT/ffa-uwf" "$OUT/ffa-uwf-slo"; do
  NAME=$(basename "$RUN")
  python experiments/real_photo_check.py --model "$RUN" --output_dir "$OUT/uwf-probe/$NAME/real_photo_check"
  for DATA in $U-test $S-test; do
    python train/evaluate.py --model "$RUN" --train_data_dir "$DATA" --split test --target_image_column \
      ffa_early,ffa_late --phase_column ffa_early_seconds,ffa_late_seconds --baselines inverted_green \
      --output_dir "$OUT/uwf-probe/$NAME/$(basename "$DATA")"
  done
done
