#!/usr/bin/env bash
# Control for experiments/uwf512_mixed.sh: the same 300 more steps of train_default.sh step 3j's recipe on the same
# data, every row at 256 px as in step 3j itself. Both 512 px runs lost ground on photos and OCT (phantom CFP -0.1 and
# -1.1 dB); if this run loses it too, the drift comes from the extra training (a fresh optimiser and warm-up from
# step 3j), not from the 512 px rows. Then the same checks. About 25 min caching + 8 min training + 20 min checks.
# Results: experiments/results/uwf512_mixed.md (when run).
set -euo pipefail
MODEL=${MODEL:-assets/ffa-default}
OUT=${OUT:-runs}
A=data/angiogram-pairs-pit L=data/uwf-angiogram-pairs-slolids-768 S=data/uwf-slo-pairs-768
for DATA in data/phantom-train data/phantom-uwf-768 $A $L $S; do
  [ -d "$DATA" ] || { echo "$DATA is missing: run experiments/train_default.sh (steps 1-3j) first" >&2; exit 1; }
done
eval "$(sed -n '/^FINE_TUNE=(/,/)$/p' experiments/train_default.sh)"
python train/train_ffa.py --pretrained_ffa_model "$MODEL" \
  --train_data_dir data/phantom-train data/phantom-uwf-768 $A $A $A $L $S $S $S $S $S $S $S $S $S $S \
  "${FINE_TUNE[@]}" --loss_mask_column loss_mask --max_train_steps 300 --checkpointing_steps 300 \
  --output_dir "$OUT/ffa-3j-more256"
python train/set_sampling_defaults.py --model "$OUT/ffa-3j-more256" --like "$MODEL"
bash experiments/check_uwf_model.sh "$OUT/ffa-3j-more256" more256
MODEL="$OUT/ffa-3j-more256" OUT="$OUT/eval-more256-phantom" PIX2PIX=${PIX2PIX:-} bash experiments/evaluate_default.sh
