"""Load on the demo: N concurrent /generate requests against `python app.py` on loopback.

Starts the real app in a subprocess (the model it loads: $FFA_MODEL_ID, else the embedded default, else the
untrained tiny fallback), fires the requests at once, and prints how many finished or were refused ("queue is
full"), the p50/p95 latency of the finished ones, and the server's peak resident memory.

    python benchmarks/bench_app_load.py [--requests 16] [--steps 20] [--samples 1]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from gradio_client import Client, handle_file
from gradio_client.utils import QueueError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "assets" / "examples" / "diabetic_retinopathy_cfp.png"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def memory_kib(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def wait_for_server(url: str, server: subprocess.Popen, timeout: float) -> Client:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"app.py exited with status {server.returncode} before serving")
        try:
            return Client(url, verbose=False)
        except Exception:  # not listening yet
            time.sleep(0.5)
    raise TimeoutError(f"app.py did not serve {url} within {timeout:g} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--image", type=Path, default=EXAMPLE)
    parser.add_argument("--timeout", type=float, default=600, help="seconds for the whole load, start-up excluded")
    args = parser.parse_args()

    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    log = tempfile.TemporaryFile("w+")  # the server's output, shown if it fails to start
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            client = wait_for_server(f"http://127.0.0.1:{port}/", server, timeout=300)
        except (RuntimeError, TimeoutError):
            log.seek(0)
            print(log.read()[-3000:], file=sys.stderr)
            raise
        idle_kib = memory_kib(server.pid, "VmRSS")

        def request(seed: int) -> tuple[str, float]:
            start = time.monotonic()
            try:
                client.submit(handle_file(str(args.image)), "cfp", "unknown", "late", args.steps, 1.5, 1.5, seed,
                              args.samples, api_name="/generate").result(timeout=args.timeout)
                return "finished", time.monotonic() - start
            except QueueError:
                return "refused", time.monotonic() - start
            except Exception as error:  # counted and shown: a benchmark reports, it does not stop
                print(f"request {seed} failed: {type(error).__name__}: {error}", file=sys.stderr)
                return "failed", time.monotonic() - start

        peak_kib, done = [idle_kib], threading.Event()

        def watch_memory() -> None:
            while not done.wait(0.05):
                peak_kib.append(memory_kib(server.pid, "VmRSS"))

        watcher = threading.Thread(target=watch_memory, daemon=True)
        watcher.start()
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(args.requests) as pool:
            outcomes = list(pool.map(request, range(args.requests), timeout=args.timeout))
        wall = time.monotonic() - start
        done.set()
        watcher.join()
        high_water_kib = memory_kib(server.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()

    latencies = np.array([seconds for outcome, seconds in outcomes if outcome == "finished"])
    counts = {name: sum(outcome == name for outcome, _ in outcomes) for name in ("finished", "refused", "failed")}
    print(f"requests: {args.requests} concurrent /generate, {args.steps} steps, {args.samples} sample(s), "
          f"image {args.image.name}, {os.cpu_count()} CPUs")
    print(f"finished: {counts['finished']}, refused (queue full): {counts['refused']}, failed: {counts['failed']}")
    if latencies.size:
        p50, p95 = np.percentile(latencies, [50, 95])
        print(f"latency of finished requests: p50 {p50:.2f} s, p95 {p95:.2f} s, max {latencies.max():.2f} s")
    print(f"wall time for the load: {wall:.1f} s")
    print(f"server RSS: idle {idle_kib / 1024:.0f} MiB, peak during load {max(peak_kib) / 1024:.0f} MiB, "
          f"process high-water mark {high_water_kib / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
