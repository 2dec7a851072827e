"""The results table: what each training run reached, beside the paper's number for its network.

    python -m tinyres.report RUN_DIR... [--at ITERATION]

One Markdown row per run directory (written by ``python -m tinyres.train``): the network, the
iterations done of those planned, the training and test error of the last evaluation (or of the
evaluation at ``--at``), the hours of training, the images per second over the whole run, the
machine and commit of its log, and the paper's CIFAR-10 test error for that network (Table 6,
after 64k iterations; the paper gives no table numbers for plain nets, only Figure 6's curves).
"""

import os
import sys

import numpy as np

from tinyres import runs as run_files
from tinyres.cli import ArgumentParser, UsageError, reporting_usage_errors

# He et al. (2015), Table 6: CIFAR-10 test error (%) of the ResNets with option A shortcuts.
# (For ResNet-110 the paper reports the best of 5 runs, 6.43%, and their mean 6.61 +- 0.16.)
PAPER_TEST_ERROR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}

COLUMNS = ["run", "network", "iterations", "training error", "test error", "training time", "images/s",
           "machine, commit", "paper (Table 6)"]


def row_at(run, iteration=None):
    """Index of the metrics row at ``iteration`` (the last row if None); ValueError if the run
    logged no evaluation at that iteration."""
    iterations = run.require_metrics().metrics["iteration"]
    if iteration is None:
        return len(iterations) - 1
    found = np.flatnonzero(iterations == iteration)
    if not len(found):
        logged = ", ".join(str(int(i)) for i in iterations[-5:])
        raise ValueError(f"{run.path} logged no evaluation at iteration {iteration} (its last ones: {logged})")
    return int(found[0])


def errors_at(runs, iterations=None):
    """A text table of each run's training and test error at these evaluations (every iteration
    any of the runs evaluated at, if None), side by side; a blank pair where a run has no
    evaluation at that iteration. The learning rate is that of the first run to have the row."""
    runs = [run.require_metrics() for run in runs]
    if iterations is None:
        iterations = sorted(set().union(*(run.metrics["iteration"].astype(int) for run in runs)))
    lines = [f"{'iteration':>9} {'lr':>6}" + "".join(f" {run.name + ' train':>16} {run.name + ' test':>15}" for run in runs)]
    for iteration in iterations:
        found = [np.flatnonzero(run.metrics["iteration"] == iteration) for run in runs]
        if not any(len(k) for k in found):
            raise ValueError(f"none of the runs logged an evaluation at iteration {iteration}")
        lr = next(run.metrics["lr"][k[0]] for run, k in zip(runs, found) if len(k))
        cells = [f" {run.metrics['train_error'][k[0]]:>16.2%} {run.metrics['test_error'][k[0]]:>15.2%}" if len(k)
                 else f" {'':>16} {'':>15}" for run, k in zip(runs, found)]
        lines.append(f"{iteration:>9,} {lr:>6g}" + "".join(cells))
    return "\n".join(lines)


def segments(path):
    """[(date, machine, commit)] of each segment of the run, from the header line that
    ``results/run_reproduction.sh`` writes to ``log.txt`` each time it starts or resumes the run."""
    found = []
    try:
        with open(os.path.join(path, "log.txt"), errors="replace") as f:
            for line in f:
                parts = [part.strip() for part in line.lstrip("# ").split(" | ")]
                if line.startswith("# 20") and len(parts) == 3 and parts[2].startswith("commit "):
                    found.append((parts[0], parts[1], parts[2].removeprefix("commit ")))
    except FileNotFoundError:
        pass
    return found


def machine(path):
    """The machines and commits the run's segments ran on, e.g. '2 cores (AMD EPYC); 3 segments,
    commits b212fae..1c3572b'."""
    found = segments(path)
    if not found:
        return "(not logged)"
    machines = "; ".join(dict.fromkeys(m for _, m, _ in found))
    commits = list(dict.fromkeys(c for _, _, c in found))
    span = commits[0] if len(commits) == 1 else f"{commits[0]}..{commits[-1]}"
    return f"{machines}; {len(found)} segment{'s' * (len(found) > 1)}, commit{'s' * (len(commits) > 1)} {span}"


def table_rows(paths, at=None):
    """The table's rows, one list of cells per run directory."""
    rows = []
    for path in paths:
        run = run_files.load(path)
        k = row_at(run, at)
        m, config = run.metrics, run.config
        iteration = int(m["iteration"][k])
        seconds = m["train_seconds"][k]
        whole_data = not (config.get("subset") or config.get("test_subset") or config.get("validation"))  # 50,000 and 10,000
        paper = PAPER_TEST_ERROR.get(config["depth"]) if whole_data and not config["plain"] and config["shortcut"] == "A" else None
        rows.append([
            f"`{path.rstrip('/').split('/')[-1]}`",
            run.name,
            f"{iteration:,} of {config['iterations']:,}",
            f"{m['train_error'][k]:.2%}",
            f"{m['test_error'][k]:.2%}",
            f"{seconds / 3600:.1f} h",
            f"{iteration * config['batch_size'] / seconds:.0f}" if seconds > 0 else "—",  # a run too short to time
            machine(path),
            f"{paper:.2f}%" if paper is not None else "—",
        ])
    return rows


def markdown(rows):
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in rows])


@reporting_usage_errors
def main(argv=None):
    parser = ArgumentParser(prog="python -m tinyres.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--at", type=int, help="the evaluation at this iteration instead of the last one")
    args = parser.parse_args(argv)
    try:
        print(markdown(table_rows(args.run_dirs, args.at)))
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
