#!/usr/bin/env bash
# The reproduction runs (issue 19): Figure 6 at a quarter of the paper's schedule, Table 6's
# ResNet-20 with the full schedule, and plain-56 with the paper's warm-up. Each run lives in
# results/<run>/ and is continued from its checkpoint when one is there, so the same command
# carries a run across sessions and machines.
#
# Usage: bash results/run_reproduction.sh DATA_DIR STOP_AT RUN [RUN ...]
#   DATA_DIR  folder with cifar-10-batches-bin/
#   STOP_AT   wall-clock time at which every run of this lane checkpoints and stops, in any form
#             `date -d` reads ("16:35", "2026-12-02 16:35 UTC"); "never" runs to the end
#   RUN       one of the names in the table below; the runs of one lane train one after another
#
# Two single-thread lanes on a 2-core machine train ~1.5x more images per hour than one run
# using both cores:
#   OPENBLAS_NUM_THREADS=1 taskset -c 0 bash results/run_reproduction.sh data 16:35 plain56-16k &
#   OPENBLAS_NUM_THREADS=1 taskset -c 1 bash results/run_reproduction.sh data 16:35 resnet20-16k plain20-16k &
# When a single run is left, RANKS=2 continues it on both cores as 2 MPI ranks (pip install -e
# '.[mpi]'; synchronized batch norm, the same global batch of 128: the same computation as one
# process, summed in another order; see README, "Resuming with another number of ranks"):
#   RANKS=2 bash results/run_reproduction.sh data 16:35 resnet20-64k &
#
# The development machines set OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for old OpenBLAS builds;
# users have neither, so the training command runs without them. Each segment of a run appends a
# header to its log.txt: date, machine, git commit, the BLAS kernel actually used, the command.
set -euo pipefail
cd "$(dirname "$0")/.."
ranks=${RANKS:-1}
launch=(python -m tinyres.train)
rank_env=()
[ "$ranks" = 1 ] || { launch=(mpiexec -n "$ranks" python -m tinyres.train); rank_env=(MPI_LOCALNRANKS="$ranks"); }
data=${1:?usage: run_reproduction.sh DATA_DIR STOP_AT RUN [RUN ...]}
stop_at=${2:?usage: run_reproduction.sh DATA_DIR STOP_AT RUN [RUN ...]}
shift 2
runs="resnet20-16k plain20-16k resnet56-16k plain56-16k resnet20-64k plain56-warmup-16k"
[ $# -gt 0 ] || { echo "name at least one run: $runs" >&2; exit 2; }
if [ "$stop_at" != never ]; then
    stop_epoch=$(date -d "$stop_at" +%s) || { echo "STOP_AT '$stop_at' is not a time date(1) reads" >&2; exit 2; }
fi
# every mistake is found before the first run starts, not hours later when the lane reaches it
[ -d "$data/cifar-10-batches-bin" ] || { echo "DATA_DIR '$data' has no cifar-10-batches-bin/ (python ../shared/data/make_cifar10_bin.py DATA_DIR writes it); without it the trainer would download the original CIFAR-10, another copy than these runs' " >&2; exit 2; }
for run in "$@"; do
    case " $runs " in *" $run "*) ;; *) echo "unknown run '$run'; the runs are: $runs" >&2; exit 2 ;; esac
    out=results/cpu-$run
    if [ ! -f "$out/checkpoint.npz" ] && [ -e "$out/metrics.csv" ]; then
        echo "$out has metrics.csv but no checkpoint.npz: restore the checkpoint (git checkout -- $out) or move the folder away; starting it again from iteration 0 would not be this run" >&2
        exit 2
    fi
done

for run in "$@"; do
    # name -> the paper's recipe at that length (lr 0.1, /10 at 50% and 75%), full test set
    case $run in
        resnet20-16k)       flags=(--depth 20 --iterations 16000 --eval-every 500) ;;
        plain20-16k)        flags=(--depth 20 --plain --iterations 16000 --eval-every 500) ;;
        resnet56-16k)       flags=(--depth 56 --iterations 16000 --eval-every 500) ;;
        plain56-16k)        flags=(--depth 56 --plain --iterations 16000 --eval-every 500) ;;
        plain56-warmup-16k) flags=(--depth 56 --plain --warmup --iterations 16000 --eval-every 500) ;;
        resnet20-64k)       flags=(--depth 20 --iterations 64000 --eval-every 1000) ;;
    esac
    out=results/cpu-$run
    flags+=(--data-dir "$data" --out "$out" --no-progress)
    [ -f "$out/checkpoint.npz" ] && flags+=(--resume)
    if [ "$stop_at" != never ]; then
        minutes=$(( (stop_epoch - $(date +%s)) / 60 ))
        [ "$minutes" -ge 2 ] || { echo "$run: less than 2 minutes before $stop_at; not started"; continue; }
        flags+=(--stop-after-minutes "$minutes")
    fi
    mkdir -p "$out"
    {
        echo "# $(date -u +%Y-%m-%dT%H:%MZ) | $(python -c 'import os; print(len(os.sched_getaffinity(0)))') cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)) | commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- tinyres || echo '+local changes')"
        # (with RANKS > 1 as one rank sees it: tinyres gives each rank cores / ranks BLAS threads)
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ${rank_env[@]+"${rank_env[@]}"} python -c "import tinyres, numpy, threadpoolctl
i = threadpoolctl.threadpool_info()[0]
print(f'# numpy {numpy.__version__}, {i[\"internal_api\"]} {i[\"version\"]} kernel {i.get(\"architecture\")}, {i[\"num_threads\"]} thread(s)')" 2>/dev/null || echo "# (threadpoolctl not installed: BLAS kernel not recorded)"
        echo "# ${OPENBLAS_NUM_THREADS:+OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS }$(printf '%q ' "${launch[@]}" "${flags[@]}")(OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset)"
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "${launch[@]}" "${flags[@]}"
    } 2>&1 | tee -ia "$out/log.txt"  # (-i: Ctrl-C reaches the trainer, which checkpoints; tee keeps logging)
done
