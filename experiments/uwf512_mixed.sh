#!/usr/bin/env bash
# Next to experiments/uwf512_probe.sh: the same 300 more steps of train_default.sh step 3j at 512 px for
# ultra-widefield frames, but on all of step 3j's data, each row at the side the model draws its modality at
# (`modality_resolutions` {uwf_slo: 512}; train_ffa.py batches rows of one side together): the UWF rows at 512 px,
# the photos and OCT en-face rows at 256 px. Does that keep the other modalities from drifting (they did when the
# fine-tune saw UWF rows alone)? Then the same checks as the probe (about 75 min caching + 27 min training + 20 min
# checks on the 2-core CPU). Not shipped.
# UWF_SIDE=256 runs the control: the same 300 steps with every row at 256 px, as in step 3j itself; if the photos
# drift there too, the drift comes from the extra training (a fresh optimiser and warm-up), not from the 512 px rows
# (about 28 min caching + 7 min training + 20 min checks; they did not drift: the drift comes with the 512 px rows;
# shipped as step 3k of experiments/train_default.sh).
# UWF_SCALE=N (with UWF_SIDE=256) adds, N times, the 84 real posterior-pole angiograms of ../shared/data/ffa_real set
# into phantom UWF eyes at UWF scale (data/uwf-scale-pairs-768, made by `UWF_SCALE=1 bash experiments/uwf512_probe.sh`)
# to those 300 steps from the default model, into $OUT/ffa-scale256xN (checks named scale256xN): at 512 px they put
# the real SLOs' discs nearer; do they at 256 px, where the other modalities did not drift?
# Results: experiments/results/uwf512_mixed.md.
set -euo pipefail
MODEL=${MODEL:-assets/ffa-default}
OUT=${OUT:-runs}
UWF_SIDE=${UWF_SIDE:-512}
A=data/angiogram-pairs-pit L=data/uwf-angiogram-pairs-slolids-768 S=data/uwf-slo-pairs-768
for DATA in data/phantom-train data/phantom-uwf-768 $A $L $S; do
  [ -d "$DATA" ] || { echo "$DATA is missing: run experiments/train_default.sh (steps 1-3j) first" >&2; exit 1; }
done
SCALE=()
UWF_SCALE=${UWF_SCALE:-0}
if [ "$UWF_SCALE" != 0 ]; then
  [[ "$UWF_SCALE" =~ ^[1-9]$ ]] || { echo "UWF_SCALE must be a count from 0 to 9, not $UWF_SCALE" >&2; exit 1; }
  [ -d data/uwf-scale-pairs-768 ] || { echo "data/uwf-scale-pairs-768 is missing: run UWF_SCALE=1 bash \
experiments/uwf512_probe.sh first" >&2; exit 1; }
  [ "$UWF_SIDE" = 256 ] || { echo "UWF_SCALE=$UWF_SCALE needs UWF_SIDE=256, not $UWF_SIDE" >&2; exit 1; }
  for _ in $(seq "$UWF_SCALE"); do SCALE+=(data/uwf-scale-pairs-768); done
  START=$MODEL NAME=scale256x$UWF_SCALE RUN=$OUT/ffa-scale256x$UWF_SCALE SIDES=()
elif [ "$UWF_SIDE" = 256 ]; then
  START=$MODEL NAME=more256 RUN=$OUT/ffa-3j-more256 SIDES=()
else
  START=$OUT/ffa-3j-mixed-start NAME=mixed RUN=$OUT/ffa-uwf$UWF_SIDE-mixed SIDES=(--modality_resolutions "uwf_slo=$UWF_SIDE")
  rm -rf "$START" && cp -r "$MODEL" "$START"
  python train/set_sampling_defaults.py --model "$START" "${SIDES[@]}"
fi
eval "$(sed -n '/^FINE_TUNE=(/,/)$/p' experiments/train_default.sh)"
python train/train_ffa.py --pretrained_ffa_model "$START" \
  --train_data_dir data/phantom-train data/phantom-uwf-768 $A $A $A $L $S $S $S $S $S $S $S $S $S $S "${SCALE[@]}" \
  "${FINE_TUNE[@]}" --loss_mask_column loss_mask --max_train_steps 300 --checkpointing_steps 300 --output_dir "$RUN"
python train/set_sampling_defaults.py --model "$RUN" --like "$MODEL" "${SIDES[@]}"
bash experiments/check_uwf_model.sh "$RUN" "$NAME"
# The phantom test set, with the pix2pix baseline of the default model's evaluation when it is there.
MODEL="$RUN" OUT="$OUT/eval-$NAME-phantom" PIX2PIX=${PIX2PIX:-} bash experiments/evaluate_default.sh
