#!/usr/bin/env bash
# Does drawing ultra-widefield frames at 512 px instead of 256 make the default model's UWF angiograms more like
# real ones? At 256 px a 200-degree frame's vessels are under a pixel wide and the model draws them thick, few and
# dim. Two probes of the default model (step 3j), not shipped, each followed by the real-photo check (scored in its
# 256 px frame), the paired metrics on the 3 held-out test triplets (as experiments/real_uwf.sh evaluates them:
# each 512 px output shrunk to 256) and the 36 held-out real angiograms with rendered photos:
#   "at 512 px": the model as it is, with `modality_resolutions` {uwf_slo: 512} recorded (no training);
#   "fine-tuned at 512 px": 300 more steps of the recipe of train_default.sh step 3j at 512 px on its UWF rows alone
#               (120 phantom UWF eyes at 768 px, the 80 UWF angiogram pairs, the 8 real SLO pairs x10 with their
#               loss masks); about 25 min caching + 46 min training at 9 s a step. Then the phantom test set.
# OPTIC_DISC=1 fine-tunes on the UWF angiogram pairs rendered with a real SLO's bright disc
# (`make_angiogram_pairs.py --optic_disc`) instead, into $OUT/ffa-uwf512-disc (checks named uwf512disc): the model
# fine-tuned on the plain renders drew the real SLOs' disc dark. The untrained probe runs only where its results
# ($OUT/rpc-3j512) are missing.
# UWF_SCALE=1 fine-tunes with the 120 phantom UWF eyes replaced by the 84 train angiograms of ../shared/data/ffa_real
# shrunk to UWF scale and each set into one of them (`make_angiogram_pairs.py --uwf_periphery`, one lid draw each),
# into $OUT/ffa-uwf512-scale (checks named uwf512scale): the 512 px models learnt the 4 real UWF train eyes' discs, not
# what a disc looks like (experiments/uwf_disc_probe.py); do 84 more eyes of real anatomy at UWF scale teach it?
# Results: README, "The default model", and experiments/results/uwf512_probe.md.
set -euo pipefail
MODEL=${MODEL:-assets/ffa-default}
OUT=${OUT:-runs}
UWF=../shared/data/uwf_slo_ffa
L=data/uwf-angiogram-pairs-slolids-768 S=data/uwf-slo-pairs-768 NAME=uwf512 RUN=$OUT/ffa-uwf512 DISC=()
P=data/phantom-uwf-768
if [ "${OPTIC_DISC:-0}" = 1 ]; then
  L=data/uwf-angiogram-pairs-slolids-disc-768 NAME=uwf512disc RUN=$OUT/ffa-uwf512-disc DISC=(--optic_disc)
fi
if [ "${UWF_SCALE:-0}" = 1 ]; then
  P=data/uwf-scale-pairs-768 NAME=uwf512scale RUN=$OUT/ffa-uwf512-scale
fi
PAIRS="python train/make_angiogram_pairs.py --layout uwf_triplets --input $UWF --resolution 768 --split train"
# The data of train_default.sh steps 3f, 3i and 3j and the held-out sets, where they are missing.
[ -d data/phantom-uwf-768 ] || python train/make_phantom_dataset.py --resolution 768 \
  --phases arterial early mid late --num_samples 120 --modalities uwf_slo --seed 31 --output_dir data/phantom-uwf-768
[ -d $L ] || $PAIRS --lid_draws 10 --lid_style slo "${DISC[@]}" --output_dir $L
[ -d $S ] || $PAIRS --real_slo_source --output_dir $S
[ -d $P ] || python train/make_angiogram_pairs.py --input ../shared/data/ffa_real --split train --resolution 768 \
  --uwf_periphery data/phantom-uwf-768 --lid_draws 1 --output_dir $P
[ -d data/uwf-registered ] || python train/prepare_dataset.py --layout uwf_triplets --input "$UWF" \
  --output_dir data/uwf-registered --resolution 512
[ -d data/uwf-as-acquired ] || python train/prepare_dataset.py --layout uwf_triplets --input "$UWF" \
  --output_dir data/uwf-as-acquired --resolution 512 --registration none
[ -d data/angiogram-pairs-test ] || python train/make_angiogram_pairs.py --input ../shared/data/ffa_real --split test \
  --no_foveal_pit --output_dir data/angiogram-pairs-test

if [ ! -d "$OUT/rpc-3j512" ]; then
  rm -rf "$OUT/ffa-3j-uwf512" && cp -r "$MODEL" "$OUT/ffa-3j-uwf512"
  python train/set_sampling_defaults.py --model "$OUT/ffa-3j-uwf512" --modality_resolutions uwf_slo=512
  bash experiments/check_uwf_model.sh "$OUT/ffa-3j-uwf512" 3j512
fi

eval "$(sed -n '/^FINE_TUNE=(/,/)$/p' experiments/train_default.sh)"
python train/train_ffa.py --pretrained_ffa_model "$MODEL" \
  --train_data_dir $P $L $S $S $S $S $S $S $S $S $S $S \
  "${FINE_TUNE[@]}" --loss_mask_column loss_mask --resolution 512 --max_train_steps 300 --checkpointing_steps 300 \
  --output_dir "$RUN"
python train/set_sampling_defaults.py --model "$RUN" --like "$MODEL" --modality_resolutions uwf_slo=512
bash experiments/check_uwf_model.sh "$RUN" $NAME
# The phantom test set, with the pix2pix baseline of the default model's evaluation when it is there.
MODEL="$RUN" OUT="$OUT/eval-$NAME-phantom" PIX2PIX=${PIX2PIX:-} bash experiments/evaluate_default.sh
