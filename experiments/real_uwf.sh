#!/usr/bin/env bash
# Experiment 3 (real data): LoRA fine-tune of the default model on the 4 real ultra-widefield SLO -> FFA train
# triplets of ../shared/data/uwf_slo_ffa (8 pairs, early + late), evaluated on its 3 test triplets.
# Registration accepts only 2 of the 8 train pairs, so training uses all 8 as acquired (roughly aligned, a few
# pixels off at 256 px); evaluation uses the registered test pairs (4 of 6 accepted) and, for completeness,
# all 6 test pairs as acquired. About 10 min on the 2-core CPU.
set -euo pipefail
MODEL=${MODEL:-assets/ffa-default}
OUT=${OUT:-runs/experiments}
STEPS=${STEPS:-300}
UWF=../shared/data/uwf_slo_ffa
[ -d data/uwf-registered ] || python train/prepare_dataset.py --layout uwf_triplets --input "$UWF" \
  --output_dir data/uwf-registered --resolution 512
[ -d data/uwf-as-acquired ] || python train/prepare_dataset.py --layout uwf_triplets --input "$UWF" \
  --output_dir data/uwf-as-acquired --resolution 512 --registration none

evaluate() {  # evaluate MODEL_DIR OUTPUT_DIR [extra flags]
  for DATA in registered as-acquired; do
    python train/evaluate.py --model "$1" --train_data_dir "data/uwf-$DATA" --split test \
      --target_image_column target_image --phase_column phase --output_dir "$2-$DATA" "${@:3}"
  done
}

# baselines: inverted green, and pix2pix trained on the same 8 real pairs with the same steps and batch as the LoRA
evaluate "$MODEL" "$OUT/uwf-default/eval" --baselines inverted_green pix2pix \
  --pix2pix_train_data_dir data/uwf-as-acquired --pix2pix_steps "$STEPS" --pix2pix_batch_size 4
python train/train_ffa.py --pretrained_ffa_model "$MODEL" --train_data_dir data/uwf-as-acquired \
  --cache_latents --random_flip --random_scale 0.05 --train_batch_size 4 --max_train_steps "$STEPS" \
  --checkpointing_steps 100000 --rank 8 --learning_rate 1e-3 --output_dir "$OUT/uwf-lora"
evaluate "$OUT/uwf-lora" "$OUT/uwf-lora/eval" --baselines

for DATA in registered as-acquired; do
  python experiments/summarize.py "default model (no fine-tune)=$OUT/uwf-default/eval-$DATA" \
    "LoRA on the 8 real train pairs=$OUT/uwf-lora/eval-$DATA" > "$OUT/real_uwf_$DATA.md"
  cat "$OUT/real_uwf_$DATA.md"
done
