"""Speed of the retina phantom: complete eyes per second (geometry + every modality + FFA phases).

    PYTHONPATH=. python benchmarks/bench_phantom.py --num_eyes 200 --resolution 256 --num_proc 2
    PYTHONPATH=. python benchmarks/bench_phantom.py --encode   # also PNG-encode the dataset rows

Prints wall-clock eyes/s and CPU milliseconds per eye for each process count, plus the load
average: on a shared machine the wall-clock figure is only as good as the idle cores.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

import cv2

from ffa_pipeline.phantom import PHANTOM_DISEASES, render_sample, sample_eye
from ffa_pipeline.phantom.rows import EyeTask, eye_rows
from ffa_pipeline.vocab import MODALITIES

PHASES = ("early", "late")


def one_eye(job: tuple[int, int, bool]) -> float:
    """Render eye ``index`` completely; returns the CPU seconds it took."""
    index, resolution, encode = job
    cv2.setNumThreads(1)
    start = time.process_time()
    disease = PHANTOM_DISEASES[index % len(PHANTOM_DISEASES)]
    if encode:
        eye_rows(EyeTask(index, 0, disease, None, resolution, MODALITIES, PHASES, False))
    else:
        render_sample(sample_eye(index, disease), resolution, MODALITIES, PHASES)
    return time.process_time() - start


def run(num_eyes: int, resolution: int, num_proc: int, encode: bool) -> tuple[float, float]:
    """(wall-clock eyes per second, mean CPU milliseconds per eye)."""
    jobs = [(index, resolution, encode) for index in range(num_eyes)]
    warmup = [(num_eyes + index, resolution, encode) for index in range(2 * num_proc)]
    if num_proc == 1:
        list(map(one_eye, warmup))
        start = time.perf_counter()
        cpu = list(map(one_eye, jobs))
        wall = time.perf_counter() - start
    else:
        with multiprocessing.Pool(num_proc) as pool:
            pool.map(one_eye, warmup, chunksize=1)
            start = time.perf_counter()
            cpu = pool.map(one_eye, jobs, chunksize=4)
            wall = time.perf_counter() - start
    return num_eyes / wall, 1000 * sum(cpu) / len(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_eyes", type=int, default=200)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--num_proc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--encode", action="store_true", help="include PNG encoding of the dataset rows")
    args = parser.parse_args()
    what = "rows (render + PNG)" if args.encode else "render"
    print(f"{args.num_eyes} eyes, {args.resolution}x{args.resolution}, {len(MODALITIES)} modalities, {PHASES}, {what}")
    for num_proc in args.num_proc:
        load = os.getloadavg()[0]
        eyes_per_second, cpu_ms = run(args.num_eyes, args.resolution, num_proc, args.encode)
        print(
            f"num_proc={num_proc}: {eyes_per_second:6.1f} eyes/s wall, {cpu_ms:5.1f} CPU ms/eye "
            f"({1000 / cpu_ms:5.1f} eyes/s per idle core), load average before {load:.2f}"
        )


if __name__ == "__main__":
    main()
