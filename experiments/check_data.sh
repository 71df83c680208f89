#!/usr/bin/env bash
# The data that the default model's checks read, each built once when missing (sourced by fast_vae_probe.sh and
# light_decoder_check.sh): 600 phantom eyes for VAE training, the 90 held-out phantom eyes (seed 1), the 36 held-out
# real angiograms with rendered photo sources, and the registered real UWF test pairs. About 2 min when all missing.
FFA=${FFA:-../shared/data/ffa_real}
[ -d data/phantom-vae600 ] || python train/make_phantom_dataset.py --resolution 256 --phases arterial early mid late \
  --num_samples 600 --modalities cfp uwf_slo oct --seed 0 --output_dir data/phantom-vae600
[ -d data/phantom-test ] || python train/make_phantom_dataset.py --num_samples 90 --resolution 256 \
  --modalities cfp uwf_slo oct --phases arterial early mid late --seed 1 --output_dir data/phantom-test
[ -d data/angiogram-pairs-test ] || python train/make_angiogram_pairs.py --input "$FFA" --split test \
  --output_dir data/angiogram-pairs-test
[ -d data/uwf-registered ] || python train/prepare_dataset.py --layout uwf_triplets --input ../shared/data/uwf_slo_ffa \
  --output_dir data/uwf-registered --resolution 512
