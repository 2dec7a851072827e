"""Where the time of one tinyres training step goes, by what the CPU is executing.

    python benchmarks/profile_step.py [--depth 20] [--batch-size 128] [--steps 5]

A Python profiler cannot see inside NumPy (a matrix product and a strided copy both look like
one line of Python), so this samples the CPU instead, with Linux `perf`: a worker process builds
the model and warms up, then `perf record` attaches to it for --steps full SGD steps (forward,
cross-entropy, backward, update; NumPy backend) and the samples are grouped by the function they
landed in:

    GEMM arithmetic     OpenBLAS's sgemm inner kernels: the multiply-adds themselves
    GEMM packing        OpenBLAS copying panels of the operands into its cache-sized layout
    BLAS threads waiting every other OpenBLAS function, and sched_yield: named for inner_thread,
                        where OpenBLAS threads spin while they wait for each other, but any
                        OpenBLAS work that is not a GEMM lands here too
    NumPy copies        NumPy functions whose names say cast, copy, contig, strided, assign or
                        memmove (padding of strided layers, transposes)
    NumPy arithmetic    every other NumPy function: elementwise ufuncs and reductions
                        (im2col's masked shifts, batch norm, ReLU, adds, SGD)
    memset/memcpy       libc: zero-filling and contiguous copies
    kernel              the operating system: page faults, thread wake-ups, scheduling
    Python              the interpreter: the autograd graph, module calls, op bookkeeping

Shares are of all samples on both cores, so on 2 cores 50% means one core's worth of time.
Needs `perf` (linux-tools) and permission to use it; without them it says so and exits.
"""

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time

CATEGORIES = [  # (name, test on the symbol and the object it lives in), first match wins
    ("GEMM arithmetic", lambda sym, dso: "openblas" in dso and "kernel" in sym and "gemm" in sym),
    ("GEMM packing", lambda sym, dso: "openblas" in dso and "gemm" in sym),
    ("BLAS threads waiting", lambda sym, dso: "openblas" in dso or "sched_yield" in sym),
    ("NumPy copies", lambda sym, dso: "multiarray" in dso and any(w in sym for w in ("cast", "copy", "contig", "strided", "assign", "memmove"))),
    ("NumPy arithmetic", lambda sym, dso: "multiarray" in dso or "umath" in dso),
    ("memset/memcpy", lambda sym, dso: "libc" in dso and ("mem" in sym)),
    ("kernel", lambda sym, dso: "kernel" in dso or sym.startswith("[k]")),
    ("Python", lambda sym, dso: "python" in dso or "libpython" in dso),
]


def worker(depth, batch_size, steps):
    """Warm up, tell the parent we are ready, wait for its go, run the steps, report the time."""
    import tinyres
    from train_step import tinyres_step_fn  # the step train_step.py times

    tinyres.backend.retain_freed_memory()  # as python -m tinyres.train does
    step = tinyres_step_fn(depth, "numpy", batch_size)
    for _ in range(2):
        step()
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - start
    print(f"{elapsed / steps * 1000:.0f} ms per step, {batch_size * steps / elapsed:.0f} img/s (while sampled)", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=12, help="also list this many hottest functions")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.depth, args.batch_size, args.steps)
    if shutil.which("perf") is None:
        sys.exit("error: this profile needs Linux perf (e.g. apt install linux-tools-generic); it is not on PATH")

    data = os.path.join(tempfile.mkdtemp(prefix="tinyres-perf-"), "perf.data")
    child = subprocess.Popen([sys.executable, __file__, "--worker", "--depth", str(args.depth), "--batch-size", str(args.batch_size), "--steps", str(args.steps)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if child.stdout.readline().strip() != "ready":  # it crashed (its error is above) or printed something else
        child.kill()
        child.wait()
        sys.exit("error: the profiled worker process failed before its warm-up ended (its error, if any, is printed above)")
    perf = subprocess.Popen(["perf", "record", "-q", "-F", "999", "-p", str(child.pid), "-o", data], stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # let perf attach to every thread before the timed steps start
    child.stdin.write("go\n")
    child.stdin.flush()
    timing = child.stdout.readline().strip()
    child.wait()
    _, err = perf.communicate()
    if perf.returncode != 0 or not os.path.exists(data):
        sys.exit(f"error: perf record failed (perf_event_paranoid may forbid it here: {err.strip()[-200:]})")

    report = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,sym", "--percent-limit", "0"],
                            capture_output=True, text=True, check=True).stdout
    shares = collections.Counter()
    functions = []
    for line in report.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "%" not in line:
            continue
        percent, rest = line.split("%", 1)
        parts = rest.split(None, 1)
        dso, sym = parts[0], (parts[1] if len(parts) > 1 else "")
        sym = sym.replace("[.] ", "").replace("[k] ", "[k]").strip()
        share = float(percent)
        category = next((name for name, test in CATEGORIES if test(sym, dso)), "other")
        shares[category] += share
        functions.append((share, category, f"{sym} ({dso})"))

    print(f"# ResNet-{args.depth}, batch {args.batch_size}, {args.steps} steps sampled by perf: {timing}")
    print(f"{'share':>6}  what the CPUs were doing")
    for name, _ in CATEGORIES + [("other", None)]:
        print(f"{shares[name]:5.1f}%  {name}")
    print(f"\n{'share':>6}  hottest functions")
    for share, category, label in sorted(functions, reverse=True)[: args.top]:
        print(f"{share:5.1f}%  {label[:90]}  [{category}]")


if __name__ == "__main__":
    main()
