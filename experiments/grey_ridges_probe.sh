#!/usr/bin/env bash
# Does a rendering-independent input (--input_representation grey_ridges) make the default model follow real photos?
# A 600-step full fine-tune of the previous (rgb) default model on the new input, then the real-photo check. ~35 min
# on 2 cores. Result (2026-11-24, MODEL = the rgb model of commit 4f8c99a): skimage early vessel AUC 0.652 vs 0.562
# mirrored (was 0.567 vs 0.594); UWF unchanged. This led to training the default model on grey_ridges from scratch.
set -euo pipefail
MODEL=${MODEL:-assets/ffa-default}
OUT=${OUT:-runs/ffa-ridges-probe}
python train/train_ffa.py --pretrained_ffa_model "$MODEL" --train_full_unet --train_data_dir data/phantom-train \
  --max_train_samples 900 --target_image_column ffa_arterial,ffa_early,ffa_mid,ffa_late \
  --phase_column ffa_arterial_seconds,ffa_early_seconds,ffa_mid_seconds,ffa_late_seconds \
  --eye_id_column eye_id --alignment_loss_weight 0.1 --cache_latents --random_flip --random_rotation 10 \
  --random_scale 0.1 --color_jitter 0.3 --input_representation grey_ridges --use_ema --snr_gamma 5 \
  --train_batch_size 8 --learning_rate 3e-4 --lr_scheduler constant_with_warmup --lr_warmup_steps 50 \
  --max_train_steps 600 --checkpointing_steps 300 --checkpoints_total_limit 1 --output_dir "$OUT"
python experiments/real_photo_check.py --model "$OUT" --output_dir "$OUT/real_photo_check"
