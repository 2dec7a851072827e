"""Images per second and peak memory of one SGD training step of a CIFAR ResNet.

    python benchmarks/train_step.py --depth 20 --backend numpy --compare torch

Warms up, then alternates timed blocks of tinyres steps and PyTorch steps (same model, same
batch, same machine, same process) and prints the median img/s of each (with the range over
rounds), the ratio of the medians and the range of the per-round ratios (each round times both
under the same conditions, so the ratio is steadier than either speed on a shared machine).
Then, once those are printed, peak memory is measured for each framework in a fresh subprocess:
the highest resident set size during the steps (Linux VmHWM, reset just before them), minus the
resident size before them (the model and the batch), i.e. what the step itself allocates at its
peak. With ``--backend cupy`` it is GPU memory instead: what each framework's caching allocator
holds after the steps beyond what it held before them (CuPy's memory pool, PyTorch's reserved
memory; both keep freed blocks, so this is the step's peak, fragmentation included).
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import tinyres  # before numpy: see the OPENBLAS_THREAD_TIMEOUT note in tinyres/__init__.py
import numpy as np
from tinyres.threads import cores

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from timing import reset_peak_rss, rss_kib, run_measurement, set_torch_threads  # noqa: E402


def make_batch(batch_size, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch_size, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, batch_size)


def tinyres_step_fn(depth, backend, batch_size, plain=False):
    import tinyres
    from tinyres.models import cifar_resnet
    from tinyres.nn.functional import cross_entropy
    from tinyres.optim import SGD

    tinyres.manual_seed(0)
    backend = tinyres.get_backend(backend)
    model = cifar_resnet(depth, plain=plain).to(backend)
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    images, labels = make_batch(batch_size)
    x, y = tinyres.Tensor(images, backend=backend), backend.asarray(labels)

    def step():
        loss = cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        backend.synchronize()

    return step


def torch_step_fn(depth, device, batch_size, plain=False):
    import torch

    from torch_reference import CifarResNet

    torch.manual_seed(0)
    model = CifarResNet(depth, plain).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    images, labels = make_batch(batch_size)
    x, y = torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sync()

    return step


def time_alternating(steps, rounds, per_round):
    """Seconds per step of each function in every round, timed in alternating blocks."""
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(per_round):
                step()
            times[name].append((time.perf_counter() - start) / per_round)
    return times


def measure_memory_in_this_process(framework, depth, backend, batch_size, plain):
    """Run in a child process: peak resident memory added by training steps, in MiB."""
    tinyres.backend.retain_freed_memory()
    if framework == "torch":
        set_torch_threads()
        step = torch_step_fn(depth, "cuda" if backend == "cupy" else "cpu", batch_size, plain)
    else:
        step = tinyres_step_fn(depth, backend, batch_size, plain)
    if backend == "cupy":
        print(json.dumps({"step_peak_mib": device_step_peak_bytes(framework, step) / 2**20}))
        return
    before = rss_kib("VmRSS")
    reset_peak_rss()
    for _ in range(3):
        step()
    peak = rss_kib("VmHWM")
    print(json.dumps({"step_peak_mib": (peak - before) / 1024, "resident_before_mib": before / 1024}))


def device_step_peak_bytes(framework, step):
    """GPU memory the caching allocator of ``framework`` holds after 3 steps beyond what it held
    before them (neither returns freed blocks to the driver, so this is the steps' peak)."""
    if framework == "torch":
        import torch

        torch.cuda.synchronize()
        held = torch.cuda.memory_reserved
    else:
        import cupy

        held = cupy.get_default_memory_pool().total_bytes
    before = held()
    for _ in range(3):
        step()
    return held() - before


def measure_memory(framework, args):
    command = [sys.executable, __file__, "--depth", str(args.depth), "--backend", args.backend,
               "--batch-size", str(args.batch_size), "--memory-child", framework] + (["--plain"] if args.plain else [])
    result, failure = run_measurement(command)
    if failure:
        sys.exit(f"error: the {framework} peak-memory subprocess failed: {failure} (--no-memory skips the memory measurement)")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--compare", choices=["torch", "none"], default="none")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps-per-round", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return measure_memory_in_this_process(args.memory_child, args.depth, args.backend, args.batch_size, args.plain)

    tinyres.backend.retain_freed_memory()  # as python -m tinyres.train does; applies to torch too
    steps = {"tinyres": tinyres_step_fn(args.depth, args.backend, args.batch_size, args.plain)}
    versions = {"numpy": np.__version__, "tinyres": tinyres.__version__}
    if args.compare == "torch":
        import torch

        set_torch_threads()
        device = "cuda" if args.backend == "cupy" else "cpu"
        steps["torch"] = torch_step_fn(args.depth, device, args.batch_size, args.plain)
        versions["torch"] = torch.__version__
    if args.backend == "cupy":
        import cupy

        versions["cupy"] = cupy.__version__
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    rounds = time_alternating(steps, args.rounds, args.steps_per_round)
    seconds = {name: statistics.median(t) for name, t in rounds.items()}
    name = f"{'plain' if args.plain else 'resnet'}-{args.depth}"
    print(f"# {name}, batch {args.batch_size}, backend {args.backend}, {platform.processor() or platform.machine()}, "
          f"{cores()} cores, " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    rate = {k: args.batch_size / s for k, s in seconds.items()}
    for k in steps:
        spread = f"{args.batch_size / max(rounds[k]):.0f}-{args.batch_size / min(rounds[k]):.0f}"
        print(f"{k:8s} {rate[k]:8.1f} img/s  ({seconds[k] * 1000:7.1f} ms/step; rounds {spread} img/s)")
    if "torch" in rate:
        ratios = sorted(b / a for a, b in zip(rounds["tinyres"], rounds["torch"]))  # per round, same conditions
        print(f"ratio    {rate['tinyres'] / rate['torch']:8.2f} x torch speed (per-round ratios {ratios[0]:.2f}-{ratios[-1]:.2f})")
    if args.no_memory:
        return
    # The speed is printed (and flushed) first: a memory subprocess that fails or is stopped by
    # a time limit must not take the speed measurement with it.
    sys.stdout.flush()
    memory = {}
    for k in steps:
        memory[k] = measure_memory(k, args)["step_peak_mib"]
        print(f"{k:8s} step peak {'GPU ' if args.backend == 'cupy' else ''}memory {memory[k]:7.1f} MiB", flush=True)
    if "torch" in memory:
        print(f"ratio    {memory['tinyres'] / memory['torch']:8.2f} x torch memory")


if __name__ == "__main__":
    main()
