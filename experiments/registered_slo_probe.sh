#!/usr/bin/env bash
# The real train SLOs inside the retina: step 3k's recipe for 300 more steps from the default model (as the control
# `OUT=runs/step3l UWF_SIDE=256 bash experiments/uwf512_mixed.sh`), but with the 8 real SLO -> angiogram train pairs
# registered onto their SLOs (`make_angiogram_pairs.py --real_slo_source --register`): a pair that registers counts
# in the loss over the whole frame, one that does not only outside the retina, as in step 3j. With the thresholds of
# ffa_pipeline.registration, 2 of the 8 register (eye 2, both phases). Then the five-seed real-photo and registered
# checks at the default image guidance (experiments/guidance_seeds.sh) and the phantom test set. About 40 min
# caching + 8 min training + 5 min seeds + 8 min phantom on the 2-core CPU. Results: experiments/results/
# registered_slo_probe.md (its MODEL: step 3k, `git archive 3b7125b assets/ffa-default | tar -x -C runs/ffa-3k`).
#   bash experiments/registered_slo_probe.sh   (MODEL=assets/ffa-default OUT=runs/registered-slo PIX2PIX=... LR=2e-4)
# LR sets the learning rate of the 300 steps (train_default.sh's fine-tunes: 2e-4; step 3m: 1e-4). LOCAL=1 refines
# each registration by a smooth local warp (`make_angiogram_pairs.py --local_registration`): a pair whose local
# refinement verifies counts on its supported region instead of the whole frame (eye 2's two pairs and eye 3's early
# one; experiments/results/local_registration_probe.md).
set -euo pipefail
MODEL=${MODEL:-assets/ffa-default}
OUT=${OUT:-runs/registered-slo}
LR=${LR:-2e-4}
A=data/angiogram-pairs-pit L=data/uwf-angiogram-pairs-slolids-768 R=data/uwf-slo-pairs-768-registered${LOCAL:+-local}
for DATA in data/phantom-train data/phantom-uwf-768 $A $L data/uwf-registered; do
  [ -d "$DATA" ] || { echo "$DATA is missing: run experiments/train_default.sh and experiments/real_uwf.sh" >&2; exit 1; }
done
[ -d $R ] || python train/make_angiogram_pairs.py --layout uwf_triplets --input ../shared/data/uwf_slo_ffa \
  --resolution 768 --split train --real_slo_source --register ${LOCAL:+--local_registration} --output_dir $R
eval "$(sed -n '/^FINE_TUNE=(/,/)$/p' experiments/train_default.sh)"
python train/train_ffa.py --pretrained_ffa_model "$MODEL" \
  --train_data_dir data/phantom-train data/phantom-uwf-768 $A $A $A $L $R $R $R $R $R $R $R $R $R $R \
  "${FINE_TUNE[@]}" --loss_mask_column loss_mask --max_train_steps 300 --checkpointing_steps 300 \
  --learning_rate "$LR" --output_dir "$OUT/model"
python train/set_sampling_defaults.py --model "$OUT/model" --like "$MODEL"
SCALE=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['default_image_guidance_scale'])" \
  "$MODEL/model_index.json")
MODEL="$OUT/model" OUT="$OUT/seeds" SCALES=$SCALE bash experiments/guidance_seeds.sh
MODEL="$OUT/model" OUT="$OUT/phantom" PIX2PIX=${PIX2PIX:-} bash experiments/evaluate_default.sh
