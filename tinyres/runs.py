"""Reading the run directories that ``python -m tinyres.train`` writes, for plots and tables.

    run = tinyres.runs.load("results/cpu-plain56-1000it")
    run.metrics["iteration"], run.metrics["train_error"]      # NumPy arrays, one entry per evaluation
    run.config["depth"], run.header                            # the settings; the log's first line

In ``metrics.csv`` the test columns are measured at the row's iteration, but ``train_loss`` and
``train_error`` are means over the batches since the previous row (the trainer logs what
training saw along the way rather than evaluating the training set again).
"""

import csv
import os
from dataclasses import dataclass

import numpy as np

from tinyres.checkpoint import read_json


@dataclass
class Run:
    """A finished or interrupted training run."""

    path: str
    config: dict
    metrics: dict  # column name -> NumPy array
    header: str  # first line of log.txt: when, where and with which command it ran ("" if none)

    @property
    def name(self):
        return f"{'plain' if self.config['plain'] else 'ResNet'}-{self.config['depth']}"

    @property
    def iterations_done(self):
        iterations = self.metrics.get("iteration", ())
        return int(iterations[-1]) if len(iterations) else 0

    @property
    def complete(self):
        """True when the run reached the length it was started with."""
        return self.iterations_done >= self.config["iterations"]

    @property
    def state(self):
        """"complete", or how far an unfinished run got."""
        planned = self.config["iterations"]
        return "complete" if self.complete else f"INCOMPLETE: {self.iterations_done} of {planned} iterations"

    @property
    def label(self):
        """The network's name, with the iterations done if the run is unfinished (for legends)."""
        return self.label_at(self.iterations_done)

    def label_at(self, iteration):
        """The label of the network as it was at ``iteration`` (e.g. a checkpoint's)."""
        planned = self.config["iterations"]
        return self.name if iteration >= planned else f"{self.name} ({iteration} of {planned} it)"

    def require_metrics(self):
        """This run, or a ValueError if it has not logged an evaluation yet."""
        if not len(self.metrics.get("iteration", ())):
            raise ValueError(
                f"{self.path} has no evaluation logged yet (metrics.csv is missing or empty); its first "
                f"row is written after {self.config.get('eval_every', '--eval-every')} iterations"
            )
        return self


def load(path):
    """Read ``config.json``, ``metrics.csv`` (absent until the first evaluation) and, if present,
    the first line of ``log.txt``. FileNotFoundError if ``path`` is not a run directory."""
    if not os.path.isfile(os.path.join(path, "config.json")):
        problem = "has no config.json" if os.path.isdir(path) else "does not exist"
        raise FileNotFoundError(f"{path} {problem}: give a run directory written by python -m tinyres.train")
    config = read_json(os.path.join(path, "config.json"))
    rows = []
    if os.path.exists(os.path.join(path, "metrics.csv")):
        with open(os.path.join(path, "metrics.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
    columns = rows[0].keys() if rows else []
    metrics = {c: np.array([float(r[c]) for r in rows]) for c in columns}
    header = ""
    log = os.path.join(path, "log.txt")
    if os.path.exists(log):
        with open(log) as f:
            header = f.readline().strip().lstrip("# ")
    return Run(path, config, metrics, header)


def load_logged_run(path, print_fn=print):
    """The run in ``path`` if it has logged an evaluation, else None, for notebooks that show
    whatever long runs have logged so far. Says which: the run's name and state and the first
    line of its log (date, machine, command), or why it is left out."""
    if not os.path.isfile(os.path.join(path, "config.json")):
        print_fn(f"{path}: MISSING (not started yet), skipped")
        return None
    run = load(path)
    if not len(run.metrics.get("iteration", ())):
        print_fn(f"{path}: started, but no evaluation logged yet, skipped")
        return None
    print_fn(f"{path}: {run.name}, logged run, {run.state}")
    print_fn(f"    log header: {run.header}")
    return run
