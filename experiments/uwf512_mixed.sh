#!/usr/bin/env bash
# Next to experiments/uwf512_probe.sh: the same 300 more steps of train_default.sh step 3j at 512 px for
# ultra-widefield frames, but on all of step 3j's data, each row at the side the model draws its modality at
# (`modality_resolutions` {uwf_slo: 512}; train_ffa.py batches rows of one side together): the UWF rows at 512 px,
# the photos and OCT en-face rows at 256 px. Does that keep the other modalities from drifting (they did when the
# fine-tune saw UWF rows alone)? Then the same checks as the probe (about 75 min caching + 27 min training + 20 min
# checks on the 2-core CPU). Not shipped.
# Results: experiments/results/uwf512_mixed.md.
set -euo pipefail
MODEL=${MODEL:-assets/ffa-default}
OUT=${OUT:-runs}
A=data/angiogram-pairs-pit L=data/uwf-angiogram-pairs-slolids-768 S=data/uwf-slo-pairs-768
for DATA in data/phantom-train data/phantom-uwf-768 $A $L $S; do
  [ -d "$DATA" ] || { echo "$DATA is missing: run experiments/train_default.sh (steps 1-3j) first" >&2; exit 1; }
done
rm -rf "$OUT/ffa-3j-mixed-start" && cp -r "$MODEL" "$OUT/ffa-3j-mixed-start"
python train/set_sampling_defaults.py --model "$OUT/ffa-3j-mixed-start" --modality_resolutions uwf_slo=512
eval "$(sed -n '/^FINE_TUNE=(/,/)$/p' experiments/train_default.sh)"
python train/train_ffa.py --pretrained_ffa_model "$OUT/ffa-3j-mixed-start" \
  --train_data_dir data/phantom-train data/phantom-uwf-768 $A $A $A $L $S $S $S $S $S $S $S $S $S $S \
  "${FINE_TUNE[@]}" --loss_mask_column loss_mask --max_train_steps 300 --checkpointing_steps 300 \
  --output_dir "$OUT/ffa-uwf512-mixed"
python train/set_sampling_defaults.py --model "$OUT/ffa-uwf512-mixed" --like "$MODEL" --modality_resolutions uwf_slo=512
bash experiments/check_uwf_model.sh "$OUT/ffa-uwf512-mixed" mixed
# The phantom test set, with the pix2pix baseline of the default model's evaluation when it is there.
MODEL="$OUT/ffa-uwf512-mixed" OUT="$OUT/eval-mixed-phantom" PIX2PIX=${PIX2PIX:-} bash experiments/evaluate_default.sh
