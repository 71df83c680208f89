"""Write a synthetic retina-phantom dataset (Hugging Face parquet + dataset card).

    python train/make_phantom_dataset.py --num_samples 1000 --resolution 256 --output_dir data/phantom
    python -c "import datasets; print(datasets.load_dataset('data/phantom'))"

One row per (eye, modality) with the source image, FFA phases in the same frame, vessel,
artery/vein and lesion masks, landmarks and the eye's settings; see ffa_pipeline.phantom.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ffa_pipeline.phantom import PHANTOM_DISEASES
from ffa_pipeline.phantom.dataset import push_to_hub, write_phantom_dataset
from ffa_pipeline.vocab import MODALITIES


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_samples", type=int, required=True, help="number of eyes (rows = eyes x modalities)")
    parser.add_argument("--resolution", type=int, default=256, help="square image side in pixels (>= 64)")
    parser.add_argument("--diseases", nargs="+", default=list(PHANTOM_DISEASES), help="cycled evenly over eyes")
    parser.add_argument("--modalities", nargs="+", default=list(MODALITIES))
    parser.add_argument("--phases", nargs="+", default=["early", "late"], help="FFA phase names from the vocabulary")
    parser.add_argument("--severity", type=float, default=None, help="fixed severity in [0, 1]; default random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--misregister", action="store_true", help="misalign FFA and source (true affine saved)")
    parser.add_argument("--num_proc", type=int, default=2, help="rendering processes")
    parser.add_argument("--samples_per_shard", type=int, default=1000, help="eyes per parquet shard")
    parser.add_argument("--scarce_modality", nargs="*", default=[], metavar="NAME=EYES",
                        help="render this modality for only the first EYES eyes (e.g. oct=60): a modality "
                        "with few pairs, for the few-shot and alignment experiments")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--push_to_hub", metavar="REPO", default=None, help="also upload to this Hub dataset repo")
    args = parser.parse_args(argv)
    try:
        args.scarce_modality = {name: int(eyes) for name, eyes in (item.split("=") for item in args.scarce_modality)}
    except ValueError:
        parser.error(f"--scarce_modality takes NAME=EYES, e.g. oct=60; got {args.scarce_modality}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    output = write_phantom_dataset(
        args.output_dir,
        num_samples=args.num_samples,
        resolution=args.resolution,
        diseases=args.diseases,
        modalities=args.modalities,
        phases=args.phases,
        severity=args.severity,
        seed=args.seed,
        misregister=args.misregister,
        num_proc=args.num_proc,
        samples_per_shard=args.samples_per_shard,
        scarce_modalities=args.scarce_modality,
    )
    print(f"wrote {output}")
    if args.push_to_hub:
        push_to_hub(output, args.push_to_hub)


if __name__ == "__main__":
    main()
