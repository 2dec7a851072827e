"""What the benchmark scripts share, so that every table is measured the same way: the best-of-N
timer, the peak resident memory (Linux), PyTorch's thread count, and running one measurement in
a fresh process.
"""

import json
import subprocess
import time

from tinyres.threads import cores  # also loads tinyres before NumPy: see tinyres/__init__.py


def best_ms(fn, repeat, sync=None):
    """The fastest of ``repeat`` calls of ``fn``, in milliseconds, after one untimed call (first
    allocations, caches). ``sync`` (e.g. ``backend.synchronize``) is called inside each timed
    call, so work a GPU has queued but not finished is counted."""
    sync = sync or (lambda: None)
    fn()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def rss_kib(field):
    """A memory figure of this process from /proc/self/status, in KiB: "VmRSS" (resident now) or
    "VmHWM" (the highest resident size since the process started or since reset_peak_rss)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss():
    """Restart VmHWM, the peak resident set size, from the current resident size (Linux: "5" in
    clear_refs), so that rss_kib("VmHWM") then measures the peak of what runs next."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def set_torch_threads():
    """Give PyTorch as many threads as tinyres's BLAS runs: the thread count you set
    (OPENBLAS_NUM_THREADS, else OMP_NUM_THREADS, as OpenBLAS reads them), else tinyres.threads.cores (the cores this process
    may run on, shared with the other processes mpiexec started here; os.cpu_count() would count
    cores the process may not use). Returns that count."""
    import os

    import torch

    given = [os.environ.get(name, "") for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")]  # OpenBLAS's own first
    count = next((int(value) for value in given if value.isdigit() and int(value) > 0), None) or cores()
    torch.set_num_threads(count)
    return count


def run_measurement(command, env=None):
    """Run ``command``, a measurement that prints its result as JSON on its last line of output,
    in a fresh process. Returns (result, None), or (None, why it failed: the last line of its
    error output)."""
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True)
    except OSError as error:  # the program itself is missing or not executable
        return None, f"cannot run {command[0]}: {error.strerror}"
    if done.returncode != 0:
        return None, (done.stderr.strip().splitlines() or [f"exit status {done.returncode}, no error output"])[-1]
    lines = done.stdout.strip().splitlines()
    if not lines:
        return None, "it printed no result"
    return json.loads(lines[-1]), None
