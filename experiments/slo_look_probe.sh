#!/usr/bin/env bash
# Does training on UWF sources drawn as a real SLO shows its eye make the model draw a real SLO's vessels better?
# Through `grey_ridges` a real SLO shows fewer, fainter, unevenly visible vessels among a choroidal mesh and dust
# rings; the renders the model learnt UWF anatomy from show every vessel of the angiogram on an even retina
# (experiments/results/uwf_vessel_limits.md). `make_angiogram_pairs.py --slo_look` draws the 8 real UWF train
# angiograms' sources that way (10 lid draws each, each its own look; the angiograms unchanged). From step 4b
# (step 3n with the light decoder, image guidance 1.5 on two branches; `git archive 979d8c2`), step 3n's recipe
# (300 steps at 1e-4, the 8 real SLO pairs registered locally x10) with those renders in place of the plain
# "slo"-lid ones, listed COPIES times, for STEPS steps; then the five-seed real-photo check at image guidance 1.5
# (experiments/guidance_seeds.sh), also for step 4b itself (BASELINE=1). The phantom rows are the first 480 of
# data/phantom-vae600 (experiments/check_data.sh), not phantom-train's. On the Intel Xeon instance: 13-20 min
# caching, 0.75 s a step, 2.5 min for the seeds. LOOK=0 is the control: the same run with step 3n's plain renders
# (`--lid_draws 10 --lid_style slo`). Results: experiments/results/slo_look_probe.md.
#   bash experiments/slo_look_probe.sh        (OUT=runs/slolook COPIES=1 STEPS=300 BASELINE=1 LOOK=1)
#   OUT=runs/slolook5 COPIES=5 STEPS=600 bash experiments/slo_look_probe.sh
#   OUT=runs/control5 COPIES=5 STEPS=600 LOOK=0 bash experiments/slo_look_probe.sh
set -euo pipefail
OUT=${OUT:-runs/slolook}
COPIES=${COPIES:-1}
STEPS=${STEPS:-300}
LOOK=${LOOK:-1}
MODEL=runs/ffa-4b
[ -d $MODEL ] || { mkdir -p $MODEL && git archive 979d8c2 assets/ffa-default | tar -x --strip-components=2 -C $MODEL; }
source experiments/check_data.sh
A=data/angiogram-pairs-pit R=data/uwf-slo-pairs-768-registered-local
PAIRS="python train/make_angiogram_pairs.py --layout uwf_triplets --input ../shared/data/uwf_slo_ffa --resolution 768"
if [ "$LOOK" = 1 ]; then L=data/uwf-angiogram-pairs-slolook-768 KIND="slo look" LOOK_FLAG=--slo_look; else
  L=data/uwf-angiogram-pairs-slolids-768 KIND="plain renders" LOOK_FLAG=; fi
[ -d $A ] || python train/make_angiogram_pairs.py --input ../shared/data/ffa_real --split train --output_dir $A
[ -d $L ] || $PAIRS --split train --lid_draws 10 --lid_style slo $LOOK_FLAG --output_dir $L
[ -d $R ] || $PAIRS --split train --real_slo_source --register --local_registration --output_dir $R
[ -d data/phantom-uwf-768 ] || python train/make_phantom_dataset.py --resolution 768 --phases arterial early mid late \
  --num_samples 120 --modalities uwf_slo --seed 31 --output_dir data/phantom-uwf-768
eval "$(sed -n '/^FINE_TUNE=(/,/)$/p' experiments/train_default.sh)"
RENDERS=$(for _ in $(seq "$COPIES"); do printf '%s ' $L; done)
# shellcheck disable=SC2086
python train/train_ffa.py --pretrained_ffa_model $MODEL \
  --train_data_dir data/phantom-vae600 data/phantom-uwf-768 $A $A $A $RENDERS $R $R $R $R $R $R $R $R $R $R \
  "${FINE_TUNE[@]}" --loss_mask_column loss_mask --max_train_steps "$STEPS" --checkpointing_steps "$STEPS" \
  --learning_rate 1e-4 --output_dir "$OUT/model"
python train/set_sampling_defaults.py --model "$OUT/model" --like $MODEL
MODEL="$OUT/model" OUT="$OUT/seeds" SCALES=1.5 bash experiments/guidance_seeds.sh
[ -z "${BASELINE:-}" ] || MODEL=$MODEL OUT=runs/seeds-4b SCALES=1.5 bash experiments/guidance_seeds.sh
python experiments/seed_spread.py ${BASELINE:+"step 4b=runs/seeds-4b/g1.5"} "$KIND x$COPIES, $STEPS steps=$OUT/seeds/g1.5" \
  | tee "$OUT/slo_look_probe.md"
