"""Training images/s of a CIFAR ResNet: one process, N ranks under mpiexec, and PyTorch on the CPU.

    python benchmarks/data_parallel.py --depths 20,56 --ranks 2
    python benchmarks/data_parallel.py --depths 20 --steps 1 --warmup 0   # a quick check that it runs

For each depth, each configuration runs in a fresh process (thread settings are read when NumPy
loads): tinyres in one process on all cores, tinyres in one process on one thread, tinyres on
--ranks ranks under mpiexec (one BLAS thread each on a machine with as many cores as ranks, see
tinyres/threads.py), and PyTorch on all cores when it is installed. All train on the same random
batch of --batch-size images, with the trainer's step: forward, backward, one Allreduce of the
gradients (and the loss and error), SGD. Printed side by side:

    img/s            the global batch over the median step time
    allreduce ms     median time per step in the gradients' Allreduce (including waiting for the
                     slowest rank), and in all Allreduces (synchronized batch norm adds two per
                     layer)
    speedup          over one process on all cores
    efficiency       img/s of N ranks / (N x img/s of one process on one thread): 1.0 is perfect
                     scaling of the same per-core work
"""

import tinyres  # noqa: I001  (before numpy: it sets the thread variables)

import argparse
import json
import os
import shutil
import statistics
import sys
import time

import numpy as np
from tinyres import threads
from tinyres.models.cifar import blocks_per_stage

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from timing import run_measurement, set_torch_threads  # noqa: E402


def timed(comm):
    """``comm``, with the seconds its allreduce calls take added up in ``comm.seconds`` (average and
    synchronized batch norm call allreduce, so they are counted too)."""
    allreduce = comm.allreduce

    def timed_allreduce(array):
        began = time.perf_counter()
        result = allreduce(array)
        comm.seconds += time.perf_counter() - began
        return result

    comm.allreduce, comm.seconds = timed_allreduce, 0.0
    return comm


def tinyres_steps(depth, batch_size, steps, warmup):
    """Median seconds per training step, and per step in Allreduce (gradients; all), on this rank."""
    from tinyres import distributed
    from tinyres.models import cifar_resnet
    from tinyres.nn.functional import cross_entropy
    from tinyres.optim import SGD
    from train_step import make_batch

    comm = timed(distributed.world())
    tinyres.manual_seed(0)
    model = distributed.synchronize_batch_norm(cifar_resnet(depth), comm)
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    images, labels = make_batch(batch_size)
    part = slice(comm.rank * batch_size // comm.size, (comm.rank + 1) * batch_size // comm.size)
    x, y = tinyres.Tensor(images[part]), labels[part]
    step_seconds, gradient_seconds, all_seconds = [], [], []
    for i in range(warmup + steps):
        comm.allgather(None)  # start together
        comm.seconds = 0.0
        began = time.perf_counter()
        loss = cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        measured = np.stack([loss.data, np.float32(0)])
        before_gradients = comm.seconds
        comm.average([p.grad for p in optimizer.parameters] + [measured])  # as Trainer.step does
        gradients = comm.seconds - before_gradients
        optimizer.step()
        elapsed = max(comm.allgather(time.perf_counter() - began))  # the slowest rank's
        if i >= warmup:
            step_seconds.append(elapsed)
            gradient_seconds.append(gradients)
            all_seconds.append(comm.seconds)
    return {"step": statistics.median(step_seconds), "gradient_allreduce": statistics.median(gradient_seconds),
            "all_allreduce": statistics.median(all_seconds), "rank": comm.rank, "ranks": comm.size}


def torch_steps(depth, batch_size, steps, warmup):
    import torch

    from train_step import torch_step_fn

    set_torch_threads()
    step = torch_step_fn(depth, "cpu", batch_size)
    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(steps):
        began = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - began)
    return {"step": statistics.median(seconds), "version": torch.__version__}


def child(args):
    """Measure one configuration in this process and print it as one JSON line (rank 0)."""
    tinyres.backend.retain_freed_memory()
    if args.one_core:  # one process on one thread: BLAS is told by OMP_NUM_THREADS, tinyres's pool by this
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    if args.child == "torch":
        result = torch_steps(args.depth, args.batch_size, args.steps, args.warmup)
    else:
        result = tinyres_steps(args.depth, args.batch_size, args.steps, args.warmup)
    if result.get("rank", 0) == 0:
        print(json.dumps(result), flush=True)


def measure(kind, depth, args, ranks=1, env=None):
    """Run a child measurement in a fresh process; its result, or None (with the reason)."""
    command = [sys.executable, os.path.abspath(__file__), "--child", kind, "--depth", str(depth),
               "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    if env and env.get("OMP_NUM_THREADS") == "1":
        command.append("--one-core")
    if ranks > 1:
        command = [args.mpiexec, "-n", str(ranks)] + command
    environment = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    result, failure = run_measurement(command, environment)
    if failure:
        print(f"# {kind} x{ranks} depth {depth} failed: {failure}", flush=True)
    return result


def find_mpiexec(given):
    """The mpiexec to start ranks with: --mpiexec when given, else the one installed beside this
    Python (pip install -e '.[mpi]' puts it there), else the first on PATH; None when there is none."""
    if given:
        return shutil.which(given)
    return shutil.which(os.path.join(os.path.dirname(sys.executable), "mpiexec")) or shutil.which("mpiexec")


def cifar_depths(text):
    """--depths: comma-separated CIFAR ResNet depths, each 6n + 2 with n >= 1."""
    try:
        depths = [int(d) for d in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers, e.g. 20,56") from None
    try:
        for depth in depths:
            blocks_per_stage(depth)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return depths


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", type=cifar_depths, default="20,56", help="comma-separated CIFAR ResNet depths, each 6n + 2 (default 20,56)")
    parser.add_argument("--ranks", type=int, default=2, help="processes under mpiexec (default 2)")
    parser.add_argument("--batch-size", type=int, default=128, help="the global mini-batch (default 128)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--mpiexec", metavar="PATH", help="the mpiexec to start --ranks ranks with (default: the one beside this "
                        "Python, which pip install -e '.[mpi]' installs, else mpiexec on PATH)")
    parser.add_argument("--child", choices=["tinyres", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--depth", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--one-core", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if args.ranks < 1:
        parser.error(f"--ranks must be at least 1, got {args.ranks}")
    if args.steps < 1 or args.warmup < 0 or args.batch_size % args.ranks:
        parser.error(f"need --steps >= 1, --warmup >= 0 and a --batch-size divisible by --ranks {args.ranks}")
    mpiexec = find_mpiexec(args.mpiexec) if args.ranks > 1 else None
    cores = threads.cores()
    print(f"# batch {args.batch_size}, {cores} cores, numpy {np.__version__}, {args.steps} timed steps after "
          f"{args.warmup} warm-up steps per configuration (median)")
    if args.ranks > 1 and mpiexec is None:
        where = f"at {args.mpiexec}" if args.mpiexec else f"beside {sys.executable} or on PATH"
        print(f"# no mpiexec {where}: the {args.ranks}-rank rows are skipped; pass --mpiexec PATH, or pip install -e '.[mpi]'", flush=True)
    args.mpiexec = mpiexec  # the program measure() starts the ranks with
    header = f"{'':10s} {'configuration':34s} {'img/s':>8s} {'ms/step':>9s} {'allreduce ms (grads; all)':>27s} {'speedup':>8s} {'efficiency':>10s}"
    print(header)
    for depth in args.depths:
        one = measure("tinyres", depth, args)
        one_thread = measure("tinyres", depth, args, env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        ranked = measure("tinyres", depth, args, ranks=args.ranks) if args.ranks == 1 or args.mpiexec else None
        torch = measure("torch", depth, args)
        rows = [(f"tinyres, 1 process x {cores} threads", one, None), ("tinyres, 1 process x 1 thread", one_thread, None),
                (f"tinyres, {args.ranks} ranks x {max(1, cores // args.ranks)} thread(s)", ranked, args.ranks),
                (f"PyTorch {torch['version'] if torch else '(not installed)'}, {cores} threads", torch, None)]
        for name, result, ranks in rows:
            if result is None:
                print(f"resnet-{depth:<3d} {name:34s} {'-':>8s}")
                continue
            rate = args.batch_size / result["step"]
            line = f"resnet-{depth:<3d} {name:34s} {rate:8.1f} {result['step'] * 1000:9.1f}"
            if ranks:
                allreduce = f"{result['gradient_allreduce'] * 1000:.1f}; {result['all_allreduce'] * 1000:.1f}"
                line += f" {allreduce:>27s}"
                if one:
                    line += f" {rate / (args.batch_size / one['step']):8.2f}"
                if one_thread:
                    line += f" {rate / (ranks * args.batch_size / one_thread['step']):10.2f}"
            print(line)


if __name__ == "__main__":
    main()
