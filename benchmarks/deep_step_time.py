"""Seconds per training iteration of deep CIFAR ResNets (chapter 9: ResNet-110 against ResNet-1202).

    OPENBLAS_NUM_THREADS=1 taskset -c 0 python benchmarks/deep_step_time.py --depths 110 1202 \
        --steps 2 --out results/step-time-110-1202.json

For each depth: build ``cifar_resnet(depth)``, take one untimed warm-up step, then ``--steps``
timed steps. A step is the training step of ``train_step.py`` (forward, cross-entropy, backward,
SGD update with the paper's momentum and weight decay) on one batch of random images: the time
of a step does not depend on the pixel values. For every step it records the wall-clock time and
the CPU time of the process (``time.process_time``, all its threads). On a machine where other
programs compete for the cores the two differ: the wall-clock time is what the step took there
and then, the CPU time is roughly what it would take with a core to itself. Also recorded: the
peak resident memory from building the network to its last step (Linux VmHWM, reset before each
depth). Depths are measured in the order given, in one process, and freed memory stays with the
process (``retain_freed_memory``, as in training), so a depth's peak also counts the heap that
earlier depths left resident. Give the depths in ascending order for peaks close to each depth's
own: each larger net reuses what the smaller ones left (in descending order, a smaller net's peak
would be the larger one's leftovers). Also recorded: the load average before and after each
depth, the cores the process may run on, the BLAS thread setting, the process's nice value, the
date and the git commit. Everything goes to the JSON file ``--out`` and a summary to stdout.
"""

import tinyres  # noqa: I001  (first: it configures OpenBLAS before NumPy starts it)

import argparse
import datetime
import gc
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from timing import reset_peak_rss, rss_kib  # noqa: E402
from train_step import tinyres_step_fn  # noqa: E402


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def time_steps(depth, batch_size, steps):
    """Wall-clock and CPU seconds of each of ``steps`` training steps after one warm-up step."""
    reset_peak_rss()
    load_before = os.getloadavg()
    step = tinyres_step_fn(depth, "numpy", batch_size)
    step()  # warm-up: first allocations, page faults
    wall, cpu = [], []
    for _ in range(steps):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - wall_start)
        cpu.append(time.process_time() - cpu_start)
    return {"depth": depth, "batch_size": batch_size, "wall_s": wall, "cpu_s": cpu,
            "peak_rss_mib": rss_kib("VmHWM") / 1024, "loadavg_before": load_before, "loadavg_after": os.getloadavg()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", type=int, nargs="+", default=[110, 1202],
                        help="measured in this order; ascending gives peak memory close to each depth's own (default 110 1202)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per depth, after one warm-up step")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args()
    # --out is first written only after the first depth has been measured: a path that cannot be
    # written must fail now, not after that wait
    folder = os.path.dirname(os.path.abspath(args.out))
    if os.path.isdir(args.out):
        parser.error(f"--out {args.out} is a folder; give the path of the JSON file to write")
    if not os.path.isdir(folder):
        parser.error(f"--out {args.out}: the folder {folder} does not exist; create it or write elsewhere")
    existed = os.path.exists(args.out)
    try:  # opening is the only reliable test (os.access says yes to root, and to /proc)
        open(args.out, "a").close()  # "a": an existing file is left as it is
    except OSError as error:
        parser.error(f"--out {args.out} cannot be written ({error.strerror}); choose a writable path")
    if not existed:
        os.remove(args.out)

    tinyres.backend.retain_freed_memory()  # as python -m tinyres.train does
    record = {
        "command": " ".join([os.path.relpath(sys.argv[0], os.path.dirname(HERE))] + sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
        "git_commit": git_commit(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "cores_allowed": sorted(os.sched_getaffinity(0)),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "nice": os.nice(0),
        "numpy": np.__version__,
        "tinyres": tinyres.__version__,
        "results": [],
    }
    for depth in args.depths:
        result = time_steps(depth, args.batch_size, args.steps)
        record["results"].append(result)
        gc.collect()
        print(f"ResNet-{depth}, batch {args.batch_size}: wall " + ", ".join(f"{s:.2f}" for s in result["wall_s"])
              + " s/step; CPU " + ", ".join(f"{s:.2f}" for s in result["cpu_s"])
              + f" s/step; peak memory {result['peak_rss_mib']:.0f} MiB; load average "
              f"{result['loadavg_before'][0]:.2f} before, {result['loadavg_after'][0]:.2f} after", flush=True)
        with open(args.out, "w") as f:  # after every depth, so a long run leaves what it measured
            json.dump(record, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
