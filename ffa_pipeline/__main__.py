"""Command line: synthetic angiograms for a file or a folder of retinal images.

    python -m ffa_pipeline generate --input PATH_OR_DIR [PATH ...] --modality cfp --disease unknown --output DIR \
        [--phases early late] [--seed 0] [--steps N] [--samples 1] [--model ID_OR_DIR]

Writes `<image>_<phase>.png` (or `<image>_<phase>_seed<N>.png` with several samples) into DIR, each a lossless PNG
with the same provenance metadata (and visible synthetic mark) as the demo. The phases of one image share their
noise, so they show one dye transit. A bad file gets one error line and the batch goes on.

Exit status: 0 when at least one image was written, 1 when every image failed, 2 for bad arguments (an unknown
modality, disease or phase, no image found, or an unloadable model).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import demo, load_default_pipeline


def find_images(inputs: Sequence[str]) -> list[Path]:
    """Files given by name (whatever their suffix) and the image files (by suffix) inside given folders."""
    images = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            images += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in demo.IMAGE_SUFFIXES)
        else:
            images.append(path)
    return images


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ffa_pipeline", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser(
        "generate",
        help="synthetic angiograms for retinal images",
        description="Synthetic fluorescein angiograms for a file or a folder of retinal images. "
        "Exit status: 0 if at least one image was written, 1 if every image failed, 2 for bad arguments.",
    )
    suffixes = ", ".join(demo.IMAGE_SUFFIXES)
    generate.add_argument("--input", nargs="+", required=True, metavar="PATH_OR_DIR",
                          help=f"image files and/or folders (in folders: the files ending in {suffixes})")
    generate.add_argument("--output", required=True, type=Path, metavar="DIR", help="folder for the PNG files")
    generate.add_argument("--modality", default="cfp", help="input modality, one of the model's (default: cfp)")
    generate.add_argument("--disease", default="unknown", help="disease label, one of the model's (default: unknown)")
    generate.add_argument("--phases", nargs="+", default=["late"],
                          help="FFA phase names of the model or seconds after injection (default: late)")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's own)")
    generate.add_argument("--image-guidance", type=float, default=None, help="(default: the model's own)")
    generate.add_argument("--label-guidance", type=float, default=None, help="(default: the model's own)")
    generate.add_argument("--samples", type=int, default=1,
                          help="samples per image and phase, from seeds seed, seed+1, ... (default: 1)")
    generate.add_argument("--model", default=None,
                          help="Hub id or folder (default: $FFA_MODEL_ID, else the embedded default model)")
    generate.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    generate.add_argument("--no-visible-mark", action="store_true",
                          help="leave out the visible SYNTHETIC mark (e.g. for training data); "
                          "the PNG metadata still says the image is synthetic")
    return parser


def _as_phase(text: str) -> str | float:
    """A phase name, or a number of seconds written as a number."""
    try:
        return float(text)
    except ValueError:
        return text


def generate(args: argparse.Namespace) -> int:
    images = find_images(args.input)
    if not images:
        print(f"error: no image files in {args.input} (looked for {', '.join(demo.IMAGE_SUFFIXES)})", file=sys.stderr)
        return 2
    try:
        pipe = load_default_pipeline(args.model).to(args.device)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"error: could not load the model {args.model or ''}: {error}", file=sys.stderr)
        return 2
    pipe.set_progress_bar_config(disable=True)
    phases = [_as_phase(phase) for phase in args.phases]
    try:
        for phase in phases:
            pipe.phase_to_seconds(phase)
        settings = demo.GenerationSettings(
            args.modality, args.disease, phases[0], args.steps, args.image_guidance, args.label_guidance, args.seed,
            args.samples,
        ).checked(pipe)
    except (demo.InvalidInputError, ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    args.output.mkdir(parents=True, exist_ok=True)
    written = failed = 0
    for path in tqdm(images, desc="Generating", unit="image"):
        try:
            source = demo.load_retinal_image(path, pipe)
        except demo.InvalidInputError as error:
            tqdm.write(f"error: {path}: {error}", file=sys.stderr)
            failed += 1
            continue
        for sample in range(settings.num_samples):
            seed = settings.seed + sample
            frames = demo.phase_series(pipe, source, settings, phases, seed, visible_mark=not args.no_visible_mark)
            for phase, angiogram in zip(phases, frames):
                suffix = f"_seed{seed}" if settings.num_samples > 1 else ""
                name = f"{path.stem}_{demo.phase_name(phase)}{suffix}.png"
                (args.output / name).write_bytes(angiogram.png_bytes())
        written += 1
    print(f"{written} image(s) written to {args.output}, {failed} failed", file=sys.stderr)
    return 1 if written == 0 else 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    return generate(args)


if __name__ == "__main__":
    sys.exit(main())
