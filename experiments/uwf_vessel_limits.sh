#!/usr/bin/env bash
# Where the default model loses a real ultra-widefield SLO's vessels (2026-12-02; results:
# experiments/results/uwf_vessel_limits.md). Four measurements, about 30 min on the 2-core CPU, most of it step 2:
# 1. The VAE alone: `vae_round_trip.py` on the 6 held-out real UWF angiograms, with the shipped VAE and step 3n's
#    (its full-size decoder, from git history).
# 2. The decoder alone fine-tuned (`train_vae.py --pretrained_vae_model_name_or_path`: the encoder frozen, so the
#    latents and the UNet stay as shipped) on the phantom angiograms, the 108 real FFA of ../shared/data/ffa_real (x4)
#    and the 8 real UWF train angiograms (x75, about a sixth of the rows), 400 steps of batch 8 on 128 px crops
#    (18 min); then its round trip as in 1.
# 3. The model on sources rendered from the held-out test eyes' real angiograms (`make_angiogram_pairs.py
#    --split test`, the renders of step 3i's training rows, exactly aligned with their angiograms), evaluated
#    against those angiograms (`train/evaluate.py`; vessel AUC against the vessels drawn in the render).
# 4. The real SLOs' native-resolution ridge maps made as thick as the renders' (`uwf_ridge_width_probe.py`).
#   bash experiments/uwf_vessel_limits.sh     (OUT=runs/uwf-decoder MODEL=assets/ffa-default)
set -euo pipefail
OUT=${OUT:-runs/uwf-decoder}
MODEL=${MODEL:-assets/ffa-default}
FFA=../shared/data/ffa_real
source experiments/check_data.sh
R=$OUT/results
mkdir -p "$R"
if [ ! -d runs/vae-step3n ]; then  # step 3n's VAE: the full-size decoder that step 4b's light one was distilled from
  mkdir -p runs/vae-step3n
  for f in config.json diffusion_pytorch_model.safetensors; do
    git show "e0b650a~1:assets/ffa-default/vae/$f" > "runs/vae-step3n/$f"
  done
fi
python experiments/vae_round_trip.py --vae "$MODEL" runs/vae-step3n --output "$R/round_trip_shipped.json"

UWF_FFA=data/uwf-train-angiograms  # the 8 train angiograms only (the pipeline never decodes an SLO)
if [ ! -d "$UWF_FFA" ]; then
  mkdir -p "$UWF_FFA"
  for f in ../shared/data/uwf_slo_ffa/train/*_ffa_*.png; do ln -s "$(realpath "$f")" "$UWF_FFA/"; done
fi
REAL=("$FFA/disease_diagnosis" "$FFA/phase_identification/train/arterial_phase"
      "$FFA/phase_identification/train/venous_phase")
[ -d "$OUT/vae" ] || python train/train_vae.py --pretrained_vae_model_name_or_path "$MODEL" --subfolder vae \
  --train_data_dir data/phantom-vae600 --image_column ffa_arterial ffa_early ffa_mid ffa_late \
  --image_dir "${REAL[@]}" "${REAL[@]}" "${REAL[@]}" "${REAL[@]}" $(for _ in $(seq 75); do echo "$UWF_FFA"; done) \
  --resolution 256 --crop_size 128 --train_batch_size 8 --learning_rate 1e-4 --lr_scheduler cosine \
  --lr_warmup_steps 20 --max_train_steps 400 --validation_fraction 0.01 --checkpointing_steps 200 \
  --checkpoints_total_limit 1 --output_dir "$OUT"
python experiments/vae_round_trip.py --vae "$MODEL" "$OUT/vae" --output "$R/round_trip_decoder.json"

RENDERS=data/uwf-angiogram-pairs-slolids-768-test
[ -d $RENDERS ] || python train/make_angiogram_pairs.py --layout uwf_triplets --input ../shared/data/uwf_slo_ffa \
  --resolution 768 --split test --lid_draws 1 --lid_style slo --output_dir $RENDERS
python train/evaluate.py --model "$MODEL" --train_data_dir $RENDERS --split test --baselines inverted_green \
  --output_dir "$R/renders"

python experiments/real_photo_check.py --model "$MODEL" --output_dir "$R/ridges-as-shipped" > /dev/null
python experiments/uwf_ridge_width_probe.py --model "$MODEL" --dilate 7 --output_dir "$R/ridges-dilate7" > /dev/null
python experiments/uwf_ridge_width_probe.py --model "$MODEL" --sigma_factor 2 --output_dir "$R/ridges-sigma2" \
  > /dev/null
