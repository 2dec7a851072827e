#!/usr/bin/env bash
# The short CPU version of the paper's Figure 6 experiment that chapters 5 and 6 load: plain and
# residual 20- and 56-layer nets, 1000 iterations each (2.6 epochs, learning rate 0.1 divided by
# 10 at iterations 500 and 750), full CIFAR-10 training set, evaluated every 100 iterations.
# Usage: bash results/run_cpu_degradation.sh DATA_DIR     (DATA_DIR holds cifar-10-batches-bin/)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: run_cpu_degradation.sh DATA_DIR}
for net in "plain 20" "resnet 20" "plain 56" "resnet 56"; do
    set -- $net
    out=results/cpu-$1$2-1000it
    flags=(--depth "$2" --iterations 1000 --eval-every 100 --data-dir "$data" --out "$out" --no-progress)
    [ "$1" = plain ] && flags+=(--plain)
    if [ -f "$out/checkpoint.npz" ]; then flags+=(--resume); fi
    mkdir -p "$out"
    { echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)): python -m tinyres.train ${flags[*]}";
      python -m tinyres.train "${flags[@]}"; } 2>&1 | tee -a "$out/log.txt"
done
