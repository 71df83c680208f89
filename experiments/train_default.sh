#!/usr/bin/env bash
# The default model shipped in assets/ffa-default: the exact commands (CPU, 2 cores; about 11 h in all).
set -euo pipefail
P="python train/make_phantom_dataset.py --resolution 256 --phases arterial early mid late"
# 1. Phantom data: 1500 eyes in CFP and UWF-SLO, OCT for only 60 eyes (a modality with few pairs).
$P --num_samples 1500 --modalities cfp uwf_slo oct --scarce_modality oct=60 --seed 0 --output_dir data/phantom-train
# 2. The VAE, from scratch: phantom sources and angiograms + the real FFA of ../shared/data/ffa_real.
python train/train_vae.py --model_config small --train_data_dir data/phantom-train \
  --image_column source_image ffa_arterial ffa_early ffa_mid ffa_late \
  --image_dir ../shared/data/ffa_real/disease_diagnosis ../shared/data/ffa_real/phase_identification/train/arterial_phase \
  ../shared/data/ffa_real/phase_identification/train/venous_phase \
  --resolution 256 --crop_size 128 --train_batch_size 8 --learning_rate 4e-4 --lr_scheduler cosine \
  --lr_warmup_steps 50 --max_train_steps 1200 --validation_fraction 0.01 --checkpointing_steps 400 \
  --checkpoints_total_limit 1 --output_dir runs/vae
# 3. The UNet, condition encoder and disease embedding, from scratch, on every phase of every row.
python train/train_ffa.py --model_config small --pretrained_vae_model_name_or_path runs/vae/vae \
  --train_data_dir data/phantom-train --max_train_samples 1200 --target_image_column ffa_arterial,ffa_early,ffa_mid,ffa_late \
  --phase_column ffa_arterial_seconds,ffa_early_seconds,ffa_mid_seconds,ffa_late_seconds \
  --eye_id_column eye_id --alignment_loss_weight 0.1 --cache_latents --random_flip --random_rotation 10 \
  --random_scale 0.1 --color_jitter 0.3 --input_representation grey_ridges --prediction_type v_prediction \
  --use_ema --snr_gamma 5 --train_batch_size 8 --learning_rate 3e-4 \
  --lr_scheduler constant_with_warmup --lr_warmup_steps 100 --max_train_steps "${MAX_TRAIN_STEPS:-1600}" \
  --checkpointing_steps 250 --checkpoints_total_limit 2 --output_dir runs/ffa-small
# 3b. 800 more steps on 800 rows without min-SNR weighting (it down-weights the noisy timesteps where the
#    low-frequency layout is decided) and with a shorter EMA. Meant to run on the corrected phantom (darker macula,
#    fovea- to disc-centred framing; step 1 run again after commit 43a0f59), but datasets' cache served the old
#    phantom-train (see README, "The default model"): the shipped model's steps 3 and 3b both saw the phantom of commit
#    f1cad19 (check out its ffa_pipeline/phantom and run step 1 to reproduce it bit for bit). Since then the trainers
#    read local folders afresh, so running this script now trains on the corrected phantom.
python train/train_ffa.py --pretrained_ffa_model runs/ffa-small --train_full_unet --train_data_dir data/phantom-train \
  --max_train_samples 800 --target_image_column ffa_arterial,ffa_early,ffa_mid,ffa_late \
  --phase_column ffa_arterial_seconds,ffa_early_seconds,ffa_mid_seconds,ffa_late_seconds \
  --eye_id_column eye_id --alignment_loss_weight 0.1 --cache_latents --random_flip --random_rotation 10 \
  --random_scale 0.1 --color_jitter 0.3 --input_representation grey_ridges --use_ema --ema_decay 0.995 \
  --train_batch_size 8 --learning_rate 2e-4 --lr_scheduler constant_with_warmup --lr_warmup_steps 50 \
  --max_train_steps "${FINETUNE_STEPS:-800}" --checkpointing_steps 400 --checkpoints_total_limit 1 \
  --output_dir runs/ffa-phantom-v2
# 3c. Real anatomy (train/make_angiogram_pairs.py): the 84 train angiograms of ../shared/data/ffa_real, each paired
#    with a photo-like source rendered from it, listed 3 times (each copy gets its own augmentation) beside 480 rows of
#    the corrected phantom; 700 steps from 3b (19 min caching + 15 min training). Without it the model lays the
#    phantom's anatomy over a real photo (its disc landed at the same place wherever the photo's disc was).
#    (`--no_foveal_pit`: rendered as before the foveal pit of step 3g.)
python train/make_angiogram_pairs.py --input ../shared/data/ffa_real --split train --no_foveal_pit \
  --output_dir data/angiogram-pairs
FINE_TUNE=(--train_full_unet --max_train_samples 480 --target_image_column ffa_arterial,ffa_early,ffa_mid,ffa_late
  --phase_column ffa_arterial_seconds,ffa_early_seconds,ffa_mid_seconds,ffa_late_seconds
  --eye_id_column eye_id --alignment_loss_weight 0.1 --cache_latents --random_flip --random_rotation 10
  --random_scale 0.1 --color_jitter 0.3 --input_representation grey_ridges --use_ema --ema_decay 0.995
  --train_batch_size 8 --learning_rate 2e-4 --lr_scheduler constant_with_warmup --lr_warmup_steps 50
  --max_train_steps 700 --checkpointing_steps 350 --checkpoints_total_limit 1)  # steps 3c-3i
ANGIOGRAM_RUN=(--train_data_dir data/phantom-train data/angiogram-pairs data/angiogram-pairs data/angiogram-pairs
  "${FINE_TUNE[@]}")
python train/train_ffa.py --pretrained_ffa_model runs/ffa-phantom-v2 "${ANGIOGRAM_RUN[@]}" --output_dir runs/ffa-angio
# 3d. Latency: the same weights with 4 attention heads of 16 channels at 32x32 latents instead of diffusers'
#    16 of 4 (the small config's `attention_head_dim` 16 is read as a head count), then 700 steps on the data of 3c
#    to tune to the new split. The CPU flash-attention kernel is slow for 4-channel heads: at 32x32 latents they took
#    0.7 of the 1.7 s of a default call on the AVX2-only machine of 2026-11-30.
python train/train_ffa.py --pretrained_ffa_model runs/ffa-angio --unet_attention_heads 16 4 16 "${ANGIOGRAM_RUN[@]}" \
  --output_dir runs/ffa-heads
# 3e. A late phase and a fovea like real angiograms': 700 more steps on the data of 3c with the phantom of commit
#    5ab8a61 (dye in the blood falls to 0.5 of its peak instead of 0.15, so late vessels keep ~0.85 of
#    their early contrast as in the real late angiograms; a darker, wider macula; experiments/phantom_realism.py).
#    Steps 3-3d saw earlier phantoms (see 3b); with step 1 run at this commit, all of them see this one.
python train/train_ffa.py --pretrained_ffa_model runs/ffa-heads "${ANGIOGRAM_RUN[@]}" --output_dir runs/ffa-late
# 3f. Real ultra-widefield anatomy at its real scale, seen through ridge maps computed at the source's own resolution:
#    `--native_resolution_ridges uwf_slo` (recorded in the condition encoder's config) gives uwf_slo inputs their
#    ridge maps from the framed source at up to 768 px, where a real SLO's vessels (0.5-2 px wide at 256 px) stand
#    out of its choroidal texture, lids and lashes. Sources that have those pixels: the 8 train angiograms of
#    ../shared/data/uwf_slo_ffa (4 eyes, early + late) framed as their SLOs with SLO-like sources rendered at 768 px
#    (listed 10 times), and 120 phantom UWF eyes rendered at 768 px, beside the data of 3c; 700 steps (26 min caching
#    + 19 min training). Without the real UWF angiograms the model drew no disc on real SLOs; with them but ridges at
#    256 px it lost the disc altogether (experiments/uwf_probe.sh).
python train/make_angiogram_pairs.py --layout uwf_triplets --input ../shared/data/uwf_slo_ffa --resolution 768 \
  --split train --no_foveal_pit --output_dir data/uwf-angiogram-pairs-768
python train/make_phantom_dataset.py --resolution 768 --phases arterial early mid late --num_samples 120 \
  --modalities uwf_slo --seed 31 --output_dir data/phantom-uwf-768
A=data/angiogram-pairs U=data/uwf-angiogram-pairs-768
python train/train_ffa.py --pretrained_ffa_model runs/ffa-late --native_resolution_ridges uwf_slo \
  --train_data_dir data/phantom-train data/phantom-uwf-768 $A $A $A $U $U $U $U $U $U $U $U $U $U "${FINE_TUNE[@]}" \
  --output_dir runs/ffa-uwf-native
# 3g. A real photo's fovea: 700 more steps on the data of 3f with the angiogram pairs rendered with a colour photo's
#    foveal pit where the angiogram's fovea is dark (train/make_angiogram_pairs.py, `foveal_pit`; 28 min caching +
#    20 min training). Without it the model drew the skimage photo's fovea faint (0.65 of the field early, none late;
#    real normal angiograms 0.37): the rendered sources' broad, shallow fovea did not look like a photo's.
python train/make_angiogram_pairs.py --input ../shared/data/ffa_real --split train --output_dir data/angiogram-pairs-pit
A=data/angiogram-pairs-pit
python train/train_ffa.py --pretrained_ffa_model runs/ffa-uwf-native \
  --train_data_dir data/phantom-train data/phantom-uwf-768 $A $A $A $U $U $U $U $U $U $U $U $U $U "${FINE_TUNE[@]}" \
  --output_dir runs/ffa-pit
# 3h. A real SLO's fovea and eyelids: 700 more steps on the data of 3g with the UWF angiograms' sources given an SLO's
#    foveal pit (where the eye's early frame has its fovea) and each rendered 10 times between other random eyelids
#    and lashes, bright in the source and black in the angiogram (`--lid_draws 10`: 80 rows in place of the 10 copies
#    of the 8; 30 min caching + 18 min training). Without them the model did not find the fovea of UWF test eye 8
#    (0.14 of the frame away) and drew a real SLO's lids brighter than its retina (experiments/real_photo_check.py).
python train/make_angiogram_pairs.py --layout uwf_triplets --input ../shared/data/uwf_slo_ffa --resolution 768 \
  --split train --lid_draws 10 --lid_style phantom --output_dir data/uwf-angiogram-pairs-lids-768
python train/train_ffa.py --pretrained_ffa_model runs/ffa-pit \
  --train_data_dir data/phantom-train data/phantom-uwf-768 $A $A $A data/uwf-angiogram-pairs-lids-768 \
  "${FINE_TUNE[@]}" --output_dir runs/ffa-lids
# 3i. Eyelids that look like a real SLO's: 700 more steps on the data of 3h with the UWF angiograms' lids drawn in the
#    "slo" style (`--lid_style slo`: uneven yellow-green lids over everything outside a wide window and outside the
#    angiogram's own field, thick dark lash clusters over the retina's edge; 80 rows in place of 3h's; 29 min caching +
#    18 min training). 3h's lids (bright, thin lashes, a narrow window that also cut the peripheral retina, black in
#    the source where the angiogram has no field) looked unlike a real SLO's through the `grey_ridges` input.
python train/make_angiogram_pairs.py --layout uwf_triplets --input ../shared/data/uwf_slo_ffa --resolution 768 \
  --split train --lid_draws 10 --lid_style slo --output_dir data/uwf-angiogram-pairs-slolids-768
python train/train_ffa.py --pretrained_ffa_model runs/ffa-lids \
  --train_data_dir data/phantom-train data/phantom-uwf-768 $A $A $A data/uwf-angiogram-pairs-slolids-768 \
  "${FINE_TUNE[@]}" --output_dir runs/ffa-slolids
# 3j. Real SLOs beside their real angiograms, where the two agree: 700 more steps on the data of 3i plus the 8 real
#    train pairs of ../shared/data/uwf_slo_ffa with the eyes' real SLOs as sources (as acquired, not pixel-aligned),
#    listed 10 times (80 of 1012 rows), each pair's loss counted only outside the angiogram's retinal field, where the
#    SLO shows lids, lashes and the black around its image and the angiogram is black (`--loss_mask_column
#    loss_mask`; 25 min caching + 17 min training). Without the mask those pairs made a dim blur (the real pairs x10 of
#    experiments/real_slo_probe.sh); without the pairs the model drew a real SLO's surround at 0.31-0.48 of its
#    retina (real angiograms 0.22-0.44) and eye 7's lid patch brighter than its disc. (Shipped from the same run started from assets/ffa-default,
#    i.e. runs/ffa-slolids with step 4's sampling defaults: scheduler class, spacing and step count, not the betas or
#    the prediction type that training reads.)
python train/make_angiogram_pairs.py --layout uwf_triplets --input ../shared/data/uwf_slo_ffa --resolution 768 \
  --split train --real_slo_source --output_dir data/uwf-slo-pairs-768
S=data/uwf-slo-pairs-768
python train/train_ffa.py --pretrained_ffa_model runs/ffa-slolids \
  --train_data_dir data/phantom-train data/phantom-uwf-768 $A $A $A data/uwf-angiogram-pairs-slolids-768 \
  $S $S $S $S $S $S $S $S $S $S "${FINE_TUNE[@]}" --loss_mask_column loss_mask --output_dir runs/ffa-realslo
# 3k. 300 more steps on the data of 3j (a fresh optimiser and warm-up; 7 min training after 28 min caching): made as
#    the control of experiments/uwf512_mixed.sh (`UWF_SIDE=256`), it drew real SLOs closer to their angiograms
#    (registered PSNR 22.9 / 22.3 dB, was 22.0 / 22.2) and the skimage photo's vessels and fovea better, at -0.4 dB
#    on phantom OCT. (Shipped from the same run started from assets/ffa-default, as 3j.)
python train/train_ffa.py --pretrained_ffa_model runs/ffa-realslo \
  --train_data_dir data/phantom-train data/phantom-uwf-768 $A $A $A data/uwf-angiogram-pairs-slolids-768 \
  $S $S $S $S $S $S $S $S $S $S "${FINE_TUNE[@]}" --loss_mask_column loss_mask --max_train_steps 300 \
  --checkpointing_steps 300 --output_dir runs/ffa-more256
# 3n. The real SLOs inside the retina where they register: 300 more steps at half the learning rate on the data of
#    3k with the 8 real SLO pairs registered onto their SLOs, each refined by a smooth local warp verified on
#    held-out tiles (`--register --local_registration`): eye 2's two pairs and eye 3's early one verify and count
#    outside the retina and on their verified retina, the other five only outside the retina, as in 3j (32 min
#    caching + 8 min training). Over five seeds: UWF discs found in 29 of 30 frames (3k: 23), registered real UWF
#    MS-SSIM 0.752 / 0.721 (0.689 / 0.661). Steps 3l (2e-4, eye 2's pairs registered by the affine alone over the
#    whole frame; shipped 2026-12-01 to 12-02) and 3m (the same at 1e-4; shipped for an hour on 2026-12-02) found
#    fewer discs (27 of 30), 3l fewer foveae and followed the phantom's early vessels less (experiments/
#    registered_slo_probe.sh with LR=1e-4 LOCAL=1, experiments/results/registered_slo_probe.md). (Shipped from the
#    same run started from assets/ffa-default, i.e. step 3k with step 4's sampling defaults, as 3j and 3k.)
python train/make_angiogram_pairs.py --layout uwf_triplets --input ../shared/data/uwf_slo_ffa --resolution 768 \
  --split train --real_slo_source --register --local_registration --output_dir data/uwf-slo-pairs-768-registered-local
R=data/uwf-slo-pairs-768-registered-local
python train/train_ffa.py --pretrained_ffa_model runs/ffa-more256 \
  --train_data_dir data/phantom-train data/phantom-uwf-768 $A $A $A data/uwf-angiogram-pairs-slolids-768 \
  $R $R $R $R $R $R $R $R $R $R "${FINE_TUNE[@]}" --loss_mask_column loss_mask --max_train_steps 300 \
  --checkpointing_steps 300 --learning_rate 1e-4 --output_dir runs/ffa-registered
# 4. Sampling defaults from the sweeps (experiments/sweep.sh) and the real-photo check: DDIM with "trailing"
#    timesteps (the first step starts from the last training timestep, as pure noise needs; "leading" started 2
#    steps at t=500), 2 steps: better SSIM and MS-SSIM on phantom eyes than 4 leading steps (PSNR level for CFP,
#    lower for OCT), at half the UNet time. Image guidance 1.5 (two UNet branches per step, run as one batch; 2
#    until 2026-12-01): over five seeds it finds the real photos' fovea and discs more often than 2 and draws the
#    registered real UWF pairs closer (experiments/guidance_seeds.sh, experiments/results/guidance_seeds.md).
python train/set_sampling_defaults.py --model runs/ffa-registered --scheduler ddim --timestep_spacing trailing \
  --num_inference_steps 2 --image_guidance_scale 1.5 --label_guidance_scale 1
# 4b. A lighter VAE decoder (2026-12-02), for the latency budget on the slower instances of the 2-core machine:
#    16 / 32 / 64 channels without attention (experiments/light_decoder.json), distilled from the model's own VAE
#    decoder with its encoder kept as it is (`--train_decoder_only`: the latents, and so the UNet, are unchanged),
#    500 steps of batch 8 on 128 px crops of 600 phantom eyes (sources and 4 phases), the 140 real FFA and the 4
#    real UWF train triplets (23 min). It draws the teacher's latents at 39.4 dB PSNR against the teacher's own
#    decoding, in 0.18-0.20 s instead of 0.48 s (experiments/light_decoder_check.sh,
#    experiments/results/light_decoder_check.md; run there with the step-3n assets/ffa-default as the teacher, the
#    same VAE as runs/ffa-registered's).
$P --num_samples 600 --modalities cfp uwf_slo oct --seed 0 --output_dir data/phantom-vae600
python train/train_vae.py --teacher_vae_model_name_or_path runs/ffa-registered --teacher_subfolder vae \
  --train_decoder_only --model_config experiments/light_decoder.json --train_data_dir data/phantom-vae600 \
  --image_column source_image ffa_arterial ffa_early ffa_mid ffa_late \
  --image_dir ../shared/data/ffa_real/disease_diagnosis ../shared/data/ffa_real/phase_identification/train/arterial_phase \
  ../shared/data/ffa_real/phase_identification/train/venous_phase ../shared/data/uwf_slo_ffa/train \
  --resolution 256 --crop_size 128 --train_batch_size 8 --learning_rate 1e-3 --lr_scheduler cosine \
  --lr_warmup_steps 30 --max_train_steps 500 --validation_fraction 0.01 --checkpointing_steps 300 \
  --checkpoints_total_limit 1 --output_dir runs/light-decoder
python -c "
from ffa_pipeline import FFADiffusionPipeline
from ffa_pipeline.light_decoder_vae import load_vae
FFADiffusionPipeline.from_pretrained('runs/ffa-registered', vae=load_vae('runs/light-decoder/vae')).save_pretrained('runs/ffa-light')"
# 4c. Image guidance distilled into the UNet (2026-12-02), for the same latency budget: one UNet pass per step
#    instead of two. The whole UNet, condition encoder and disease embedding learn a frozen copy's guided prediction
#    `labels_only + 1.5 (full - labels_only)` (`--guidance_distillation_scale 1.5`; the saved model's default image
#    guidance is 1), 500 steps on 548 rows of the kinds of data of step 3n (17 min caching + 43 min training): 0.78-0.80
#    s a call instead of 1.00-1.03 s in turns on the AVX2-only instance, level on the real photos and phantoms
#    (experiments/guidance_distill.sh, run there with the step-4b assets/ffa-default, i.e. runs/ffa-light;
#    experiments/results/guidance_distill.md).
A=data/angiogram-pairs-pit R=data/uwf-slo-pairs-768-registered-local
python train/train_ffa.py --pretrained_ffa_model runs/ffa-light --guidance_distillation_scale 1.5 --train_full_unet \
  --train_data_dir data/phantom-vae600 data/phantom-uwf-768 $A data/uwf-angiogram-pairs-slolids-768 $R $R $R \
  --max_train_samples 240 --target_image_column ffa_arterial,ffa_early,ffa_mid,ffa_late \
  --phase_column ffa_arterial_seconds,ffa_early_seconds,ffa_mid_seconds,ffa_late_seconds \
  --eye_id_column eye_id --alignment_loss_weight 0.1 --cache_latents --random_flip --random_rotation 10 \
  --random_scale 0.1 --color_jitter 0.3 --use_ema --ema_decay 0.995 --train_batch_size 8 --learning_rate 1e-4 \
  --lr_scheduler constant_with_warmup --lr_warmup_steps 50 --max_train_steps 500 --checkpointing_steps 250 \
  --checkpoints_total_limit 1 --output_dir runs/ffa-distilled
# 5. Ship the pipeline alone (Hub layout, no checkpoints, logs or card); the model card
#    assets/ffa-default/README.md is written by hand from the evaluation (experiments/evaluate_default.sh).
python -c "
from ffa_pipeline import FFADiffusionPipeline
FFADiffusionPipeline.from_pretrained('runs/ffa-distilled').save_pretrained('assets/ffa-default')"
