"""Reading the run directories that ``python -m tinyres.train`` writes, for plots and tables.

    run = tinyres.runs.load("results/cpu-plain56-1000it")
    run.metrics["iteration"], run.metrics["train_error"]      # NumPy arrays, one entry per evaluation
    run.config["depth"], run.header                            # the settings; the log's first line
"""

import csv
import json
import os
from dataclasses import dataclass

import numpy as np


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


def load(path):
    """Read ``config.json``, ``metrics.csv`` (absent until the first evaluation) and, if present,
    the first line of ``log.txt``."""
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
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
