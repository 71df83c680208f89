#!/usr/bin/env bash
# Experiment 1 (few-shot) and 2 (alignment loss): OCT en-face -> FFA, a modality the default model saw for only
# 60 of its 1500 eyes. LoRA on the default model vs training from scratch, on 4 / 16 / 64 OCT pairs, same steps;
# then, on 16 OCT pairs + 64 CFP partners of the same eyes, LoRA with and without the alignment loss.
# Held-out: 40 new phantom eyes (OCT, early and late phase). From scratch = the default model's architecture, input
# representation and VAE, random UNet. About 55-65 min on the 2-core CPU (46 min to the end of Experiment 1).
set -euo pipefail
MODEL=${MODEL:-assets/ffa-default}
VAE=${VAE:-$MODEL/vae}  # the default model's own (frozen) VAE, so only the UNet side differs
OUT=${OUT:-runs/experiments}
STEPS=${STEPS:-300}
P="python train/make_phantom_dataset.py --resolution 256 --phases arterial early mid late --num_proc 1"
[ -d data/phantom-oct-pairs ] || $P --num_samples 64 --modalities oct --seed 2 --output_dir data/phantom-oct-pairs
[ -d data/phantom-oct-align ] || $P --num_samples 64 --modalities cfp oct --scarce_modality oct=16 --seed 2 \
  --output_dir data/phantom-oct-align
[ -d data/phantom-test-oct ] || $P --num_samples 40 --modalities oct --seed 3 --output_dir data/phantom-test-oct

COLUMNS=(--target_image_column ffa_arterial,ffa_early,ffa_mid,ffa_late
         --phase_column ffa_arterial_seconds,ffa_early_seconds,ffa_mid_seconds,ffa_late_seconds)
TRAIN=(--cache_latents --random_flip --train_batch_size 4 --max_train_steps "$STEPS" --checkpointing_steps 100000)

evaluate() {  # evaluate MODEL_DIR OUTPUT_DIR [extra flags]
  python train/evaluate.py --model "$1" --train_data_dir data/phantom-test-oct \
    --target_image_column ffa_early,ffa_late --phase_column ffa_early_seconds,ffa_late_seconds \
    --output_dir "$2" "${@:3}"
}

evaluate "$MODEL" "$OUT/default-0/eval" --baselines inverted_green
for N in ${PAIRS:-4 16 64}; do
  python train/train_ffa.py --pretrained_ffa_model "$MODEL" --train_data_dir data/phantom-oct-pairs \
    --max_train_samples "$N" "${COLUMNS[@]}" "${TRAIN[@]}" --rank 8 --learning_rate 1e-3 \
    --output_dir "$OUT/lora-$N"
  evaluate "$OUT/lora-$N" "$OUT/lora-$N/eval" --baselines
  python train/train_ffa.py --model_config small --pretrained_vae_model_name_or_path "$VAE" \
    --input_representation grey_ridges --unet_attention_heads 16 4 16 --train_data_dir data/phantom-oct-pairs \
    --max_train_samples "$N" "${COLUMNS[@]}" "${TRAIN[@]}" \
    --learning_rate 3e-4 --output_dir "$OUT/scratch-$N"
  python train/set_sampling_defaults.py --model "$OUT/scratch-$N" --like "$MODEL"
  evaluate "$OUT/scratch-$N" "$OUT/scratch-$N/eval" --baselines
done

for WEIGHT in 0 0.1; do
  python train/train_ffa.py --pretrained_ffa_model "$MODEL" --train_data_dir data/phantom-oct-align \
    --eye_id_column eye_id --alignment_loss_weight "$WEIGHT" "${COLUMNS[@]}" "${TRAIN[@]}" --rank 8 \
    --learning_rate 1e-3 --output_dir "$OUT/align-$WEIGHT"
  evaluate "$OUT/align-$WEIGHT" "$OUT/align-$WEIGHT/eval" --baselines
done

RUNS=("default model, no fine-tuning=$OUT/default-0/eval")
for N in ${PAIRS:-4 16 64}; do
  RUNS+=("LoRA on default, $N pairs=$OUT/lora-$N/eval" "from scratch, $N pairs=$OUT/scratch-$N/eval")
done
python experiments/summarize.py "${RUNS[@]}" > "$OUT/few_shot.md"
python experiments/summarize.py "LoRA, no alignment loss=$OUT/align-0/eval" \
  "LoRA, alignment loss 0.1=$OUT/align-0.1/eval" > "$OUT/alignment.md"
cat "$OUT/few_shot.md" "$OUT/alignment.md"
