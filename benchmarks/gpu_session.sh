#!/usr/bin/env bash
# Issue 18's checks on a lent GPU, in one run of at most ~9 minutes (a session has ~15 minutes of
# device time in all, the machine's start included). Everything it prints also lands in $OUT.
#
# Here, first (the full CIFAR-10 copy is too big to travel; 18 MB of real images do):
#   python benchmarks/cifar_subset.py data local/gpu-data --per-file 1000
# Then, through the device tool, from the repository root:
#   run(command="bash benchmarks/gpu_session.sh local/gpu-data", carry=["local/gpu-data"], timeout_s=570)
#
# The machine has python3 with CuPy, PyTorch (CUDA), NumPy, pytest, hypothesis and tqdm, and
# nothing can be installed there: tinyres runs from the working tree (PYTHONPATH), uninstalled.
# Sections, each under its own time limit so one slow part cannot eat the others:
#   1. the machine: GPU, driver, versions
#   2. the test suite with the CuPy backend (the chapters and the mpiexec tests are left out: no
#      nbclient or MPI runtime there)
#   3. benchmarks/train_step.py for ResNet-20, 56 and 110, CuPy against PyTorch CUDA eager in the
#      same process, with each one's peak GPU memory
#   4. a short real training run, python -m tinyres.train --depth 56 --backend cupy, on the subset:
#      its images/s and the projected time of the paper's 64k iterations
set -uo pipefail
data=${1:?usage: gpu_session.sh DATA_DIR (a folder with cifar-10-batches-bin/, e.g. local/gpu-data)}
out=${OUT:-/tmp/gpu-session}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=python3
section() { echo; echo "=== $1 ($(date -u +%H:%M:%S))"; }

{
section "1. machine"
date -u +%Y-%m-%dT%H:%MZ; git rev-parse --short HEAD 2>/dev/null
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
$py -c "import sys, numpy, cupy, torch; print('python', sys.version.split()[0], '| numpy', numpy.__version__, '| cupy', cupy.__version__, '| torch', torch.__version__, '| CUDA devices', cupy.cuda.runtime.getDeviceCount())"

section "2. tests with the CuPy backend (limit 180 s)"
# backend tests run on CuPy alone (CI runs them on NumPy and the strict backend); the rest as
# always. Spread over 8 processes where pytest-xdist is there.
workers=$($py -c "import xdist" 2>/dev/null && echo "-n 8")
TINYRES_TEST_BACKEND=cupy timeout 180 $py -m pytest -q -p no:cacheprovider -o addopts="" -rfE $workers \
    --ignore=tests/test_chapters.py --ignore=tests/test_distributed.py tests > "$out/tests.log" 2>&1
echo "pytest exit status $? (124: stopped at the limit); its last lines:"
tail -n 30 "$out/tests.log"

section "3. one training step, CuPy vs PyTorch CUDA eager (limit 60 s each)"
for depth in 20 56 110; do
    timeout 60 $py benchmarks/train_step.py --depth $depth --backend cupy --compare torch --warmup 3 --rounds 5 --steps-per-round 10 \
        || echo "train_step.py --depth $depth: exit status $?"
done

section "4. python -m tinyres.train --depth 56 --backend cupy, 400 iterations on $data (limit 150 s)"
timeout 150 $py -m tinyres.train --depth 56 --backend cupy --data-dir "$data" --iterations 400 --eval-every 200 \
    --no-progress --out "$out/run-resnet56" || echo "tinyres.train: exit status $?"
$py - "$out/run-resnet56" <<'PY' || true
import sys
from tinyres import runs
run = runs.load(sys.argv[1]).require_metrics()
m, batch = run.metrics, run.config["batch_size"]
it, ts = m["iteration"], m["train_seconds"]
rate = it[-1] * batch / ts[-1]
print(f"{run.name}: {int(it[-1])} iterations in {ts[-1]:.1f} s of training, {rate:.0f} img/s (evaluations excluded)")
# The projection uses the last logged interval only: the first one carries the start-up costs
# (CUDA context, kernel compilation, first allocations), which 64k iterations would not repeat
if len(it) > 1:
    rate, span = (it[-1] - it[-2]) * batch / (ts[-1] - ts[-2]), f"iterations {int(it[-2])}-{int(it[-1])}, the last logged interval"
else:
    span = "the whole run, start-up included: only one interval was logged"
print(f"the paper's 64,000 iterations would take {64000 * batch / rate / 3600:.1f} h at {rate:.0f} img/s ({span})")
PY
section "done"
} 2>&1 | tee "$out/gpu_session.log"
