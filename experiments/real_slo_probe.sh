#!/usr/bin/env bash
# Do the real train SLO-angiogram pairs in the default model's own fine-tune make it draw a real SLO's lids dark?
# (The LoRA of Experiment 3, trained on those 8 pairs alone, does; the default model draws them as bright as the
# retina.) Four fine-tunes of the model of step 3i with the recipe and data of experiments/train_default.sh
# step 3i, each followed by the real-photo check and the paired metrics on the 3 held-out test triplets (as
# experiments/real_uwf.sh evaluates them); the first two 300 steps long:
#   "real SLO": + the 8 real train pairs of ../shared/data/uwf_slo_ffa (early + late) with the eyes' real SLOs as
#               sources (make_angiogram_pairs.py --real_slo_source, as acquired: not pixel-aligned), listed 3 times;
#   "control":  the same without them, so that what 300 more steps do by themselves is seen apart;
#   "real SLO x10": the real pairs listed 10 times, over the full 700 steps of step 3i;
#   "real SLO x10, outside the retina only": the same, with the real pairs' loss only outside the angiogram's
#               retinal field (--loss_mask_column loss_mask: the SLO's lids, lashes and the black around its image,
#               where the angiogram is black); shipped as step 3j of train_default.sh. (Its first version, at commit
#               f6e489f, left the black around the image out of the mask: experiments/results/real_slo_probe.md.)
# About 30 min each on the 2-core CPU (22 min caching latents + 6-7 min training), 40 min for the last two.
# Results: README, "The default model", and experiments/results/real_slo_probe.md.
set -euo pipefail
# The model of step 3i, shipped in assets/ffa-default until commit 2d58a31 (step 3j is the last run below).
MODEL=${MODEL:-runs/ffa-default-3i}
[ -d "$MODEL" ] || { mkdir -p "$MODEL" && git archive 2d58a31 assets/ffa-default | tar -x --strip-components=2 -C "$MODEL"; }
OUT=${OUT:-runs}
UWF=../shared/data/uwf_slo_ffa
A=data/angiogram-pairs-pit L=data/uwf-angiogram-pairs-slolids-768 S=data/uwf-slo-pairs-768
PAIRS="python train/make_angiogram_pairs.py --layout uwf_triplets --input $UWF --resolution 768 --split train"
# The data of train_default.sh steps 1, 3f, 3g and 3i, where they are missing (the fine-tune reads the first 480
# rows of phantom-train: 220 eyes give the same rows as its 1500).
[ -d data/phantom-train ] || python train/make_phantom_dataset.py --resolution 256 --phases arterial early mid late \
  --num_samples 220 --modalities cfp uwf_slo oct --scarce_modality oct=60 --seed 0 --output_dir data/phantom-train
[ -d data/phantom-uwf-768 ] || python train/make_phantom_dataset.py --resolution 768 \
  --phases arterial early mid late --num_samples 120 --modalities uwf_slo --seed 31 --output_dir data/phantom-uwf-768
[ -d $A ] || python train/make_angiogram_pairs.py --input ../shared/data/ffa_real --split train --output_dir $A
[ -d $L ] || $PAIRS --lid_draws 10 --lid_style slo --output_dir $L
$PAIRS --real_slo_source --output_dir $S  # always (11 s): a copy from before its loss_mask column gets it
# The 3 held-out test triplets, registered and as acquired (as experiments/real_uwf.sh builds them).
[ -d data/uwf-registered ] || python train/prepare_dataset.py --layout uwf_triplets --input "$UWF" \
  --output_dir data/uwf-registered --resolution 512
[ -d data/uwf-as-acquired ] || python train/prepare_dataset.py --layout uwf_triplets --input "$UWF" \
  --output_dir data/uwf-as-acquired --resolution 512 --registration none
# The recipe of steps 3c-3i: 700 steps, 300 for the first two runs.
eval "$(sed -n '/^FINE_TUNE=(/,/)$/p' experiments/train_default.sh)"
STEP_3I=(data/phantom-train data/phantom-uwf-768 $A $A $A $L)
python train/train_ffa.py --pretrained_ffa_model "$MODEL" --train_data_dir "${STEP_3I[@]}" $S $S $S "${FINE_TUNE[@]}" \
  --max_train_steps 300 --output_dir "$OUT/probe-realslo"
python train/train_ffa.py --pretrained_ffa_model "$MODEL" --train_data_dir "${STEP_3I[@]}" "${FINE_TUNE[@]}" \
  --max_train_steps 300 --output_dir "$OUT/probe-control"
python train/train_ffa.py --pretrained_ffa_model "$MODEL" \
  --train_data_dir "${STEP_3I[@]}" $S $S $S $S $S $S $S $S $S $S "${FINE_TUNE[@]}" --output_dir "$OUT/probe-realslo10"
python train/train_ffa.py --pretrained_ffa_model "$MODEL" \
  --train_data_dir "${STEP_3I[@]}" $S $S $S $S $S $S $S $S $S $S "${FINE_TUNE[@]}" --loss_mask_column loss_mask \
  --output_dir "$OUT/probe-realslo10-outside"
for RUN in "$MODEL" "$OUT/probe-realslo" "$OUT/probe-control" "$OUT/probe-realslo10" "$OUT/probe-realslo10-outside"; do
  NAME=$(basename "$RUN")
  python experiments/real_photo_check.py --model "$RUN" --output_dir "$OUT/real-slo-probe/$NAME"
  for DATA in registered as-acquired; do
    python train/evaluate.py --model "$RUN" --train_data_dir "data/uwf-$DATA" --split test \
      --target_image_column target_image --phase_column phase --baselines --output_dir "$OUT/real-slo-probe/$NAME-$DATA"
  done
done
