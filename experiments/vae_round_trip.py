"""How much of a real ultra-widefield angiogram's vessels survives the VAE alone (encode -> decode, no UNet)?

    python experiments/vae_round_trip.py --vae assets/ffa-default runs/uwf-decoder/vae [--split test]

The 6 angiograms of `../shared/data/uwf_slo_ffa/<split>` (3 eyes, early and late), framed at the pipeline's 256 px
as the pipeline frames a source, each encoded (posterior mode) and decoded by every VAE given: PSNR and SSIM
(scikit-image) against the framed angiogram, and the ridge energy kept, the mean bright-vessel Sato response
(sigma 1 px) of the decoded image over the angiogram's (1: vessels as sharp and bright as the original; below 1:
drawn thicker and dimmer). Whatever the UNet draws reaches the user through this decoder, so this is a ceiling on
the model's UWF vessels. Ours (a diagnostic of this project's VAE).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from skimage.filters import sato
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ffa_pipeline.image_processing import FFAImageProcessor
from ffa_pipeline.light_decoder_vae import load_vae

UWF = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "uwf_slo_ffa"
RESOLUTION = 256


def framed_angiograms(split: str) -> dict[str, np.ndarray]:
    """{'eye phase': HxW float angiogram in [0, 1], framed at RESOLUTION as the pipeline frames a source}."""
    processor = FFAImageProcessor(resolution=RESOLUTION)
    angiograms = {}
    for path in sorted((UWF / split).glob("*_ffa_*.png")):
        rgb = processor.to_float_rgb(PIL.Image.open(path))
        eye, _, phase = path.stem.split("_")
        angiograms[f"{eye} {phase}"] = processor.apply_framing(rgb, processor.frame(rgb), RESOLUTION).mean(axis=2)
    return angiograms


@torch.no_grad()
def round_trip(vae, angiogram: np.ndarray) -> np.ndarray:
    pixels = torch.from_numpy(angiogram).float()[None, None].repeat(1, 3, 1, 1) * 2 - 1
    decoded = vae.decode(vae.encode(pixels).latent_dist.mode()).sample
    return ((decoded[0].mean(0).numpy() + 1) / 2).clip(0, 1)


def ridge_energy(image: np.ndarray) -> float:
    return float(sato(image, sigmas=[1], black_ridges=False).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", nargs="+", default=["assets/ffa-default"],
                        help="VAE folders, or pipeline folders (their 'vae' subfolder is used).")
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--output", type=Path, default=None, help="Also write the figures to this JSON file.")
    args = parser.parse_args()
    vaes = {name: load_vae(name, subfolder="vae" if (Path(name) / "vae").is_dir() else None) for name in args.vae}
    report = {}
    print("| angiogram | VAE | PSNR (dB) | SSIM | ridge energy kept |\n|---|---|---|---|---|")
    for key, angiogram in framed_angiograms(args.split).items():
        for name, vae in vaes.items():
            decoded = round_trip(vae, angiogram)
            figures = {"psnr": float(peak_signal_noise_ratio(angiogram, decoded, data_range=1.0)),
                       "ssim": float(structural_similarity(angiogram, decoded, data_range=1.0)),
                       "ridge_energy_kept": ridge_energy(decoded) / ridge_energy(angiogram)}
            report.setdefault(key, {})[name] = figures
            print(f"| {key} | {name} | {figures['psnr']:.2f} | {figures['ssim']:.3f} | "
                  f"{figures['ridge_energy_kept']:.2f} |")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
