#!/usr/bin/env bash
# The short CPU version of the paper's Figure 6 experiment that chapters 5, 6 and 8 load: plain
# and residual 20- and 56-layer nets, 1000 iterations each (2.6 epochs, learning rate 0.1 divided
# by 10 at iterations 500 and 750), full CIFAR-10 training set, evaluated on the full test set
# every 100 iterations (20 layers) or 200 (56 layers, whose evaluations take three times as long).
#
# Usage: bash results/run_cpu_degradation.sh DATA_DIR [NET ...]
#   DATA_DIR holds cifar-10-batches-bin/; NET is plain20, resnet20, plain56 or resnet56 (all four,
#   one after the other, by default). A run with a checkpoint is resumed.
# On a 2-core machine two single-core lanes train ~1.4x more images per second in total than one
# two-core run (NumPy's elementwise work is single-threaded), which is how results/ was made:
#   OPENBLAS_NUM_THREADS=1 taskset -c 0 bash results/run_cpu_degradation.sh data plain20 plain56 &
#   OPENBLAS_NUM_THREADS=1 taskset -c 1 bash results/run_cpu_degradation.sh data resnet20 resnet56 &
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: run_cpu_degradation.sh DATA_DIR [plain20|resnet20|plain56|resnet56 ...]}
shift
nets=("$@")
[ ${#nets[@]} -gt 0 ] || nets=(plain20 resnet20 plain56 resnet56)
for net in "${nets[@]}"; do
    kind=${net%%[0-9]*} depth=${net#"$kind"}
    case $kind in plain|resnet) ;; *) echo "unknown net '$net': use plain20, resnet20, plain56 or resnet56" >&2; exit 2;; esac
    out=results/cpu-$net-1000it
    flags=(--depth "$depth" --iterations 1000 --eval-every $(( depth > 20 ? 200 : 100 )) --data-dir "$data" --out "$out" --no-progress)
    [ "$kind" = plain ] && flags+=(--plain)
    if [ -f "$out/checkpoint.npz" ]; then flags+=(--resume); fi
    mkdir -p "$out"
    { echo "# $(date -u +%Y-%m-%dT%H:%MZ), cores available: $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-unset}: python -m tinyres.train ${flags[*]}";
      python -m tinyres.train "${flags[@]}"; } 2>&1 | tee -a "$out/log.txt"
done
