"""A run directory: the files ``python -m tinyres.train`` writes, and the one module that knows them.

    results/cpu-resnet20-16k/
        checkpoint.npz   the run's record: weights, momentum, counters, and every setting
        config.json      a readable copy of those settings
        metrics.csv      one row per evaluation, only for iterations the checkpoint covers
        log.txt          what the run printed, when a script keeps it (results/ does)
        .lock            held by the process that writes here

    run = tinyres.runs.load("results/cpu-plain56-1000it")     # for plots and tables
    run.metrics["iteration"], run.metrics["train_error"]       # NumPy arrays, one entry per evaluation
    run.config["depth"], run.header                             # the settings; the log's first line

What a run directory guarantees (the trainer relies on it, the tests check it):
- One writer. A process that writes here holds an OS lock on ``.lock`` (released by the OS when
  the process ends, even by kill -9, so nothing stale is left); a second one is refused with the
  holder's PID.
- One source of truth. The checkpoint records the settings that define the experiment;
  ``config.json`` is checked against it (and against a schema: types, ranges, unknown keys) on
  resume and evaluation, and a disagreement is an error naming the setting.
- Nothing half-written. Checkpoints and config.json are written to ``NAME.tmp`` and renamed
  (atomic on POSIX); a full disk removes the ``.tmp``, keeps the previous file and says how much
  space was needed. A metrics row is appended only after the checkpoint that covers its iteration
  is saved; on resume, rows past the checkpoint and a half-written last line are dropped, and the
  checkpoint's own row is restored if the process died between the two writes.

In ``metrics.csv`` the test columns are measured at the row's iteration, but ``train_loss`` and
``train_error`` are means over the batches since the previous row (the trainer logs what
training saw along the way rather than evaluating the training set again).
"""

import contextlib
import csv
import errno
import json
import math
import os
import shutil
from dataclasses import dataclass

import numpy as np

from tinyres import checkpoint

CHECKPOINT, CONFIG, METRICS, LOCK = "checkpoint.npz", "config.json", "metrics.csv", ".lock"
DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG)


class RunDirError(ValueError):
    """A run directory that cannot be used as asked; the message names the file and the fix."""


# ----- the settings a run records, and what each may hold ---------------------------------------

def _int(low):
    return lambda v: type(v) is int and v >= low


def _number(low, high=math.inf, low_open=False):
    def check(v):
        if type(v) not in (int, float) or not math.isfinite(v):
            return False
        return (v > low if low_open else v >= low) and v <= high
    return check


def _optional(check):
    return lambda v: v is None or check(v)


def _one_of(*choices):
    return lambda v: v in choices and type(v) is type(choices[0])


def parse_milestones(text):
    """'32000,48000' -> [32000, 48000], the iterations where the rate is divided; anything else
    (an empty part, a number below 1) is a ValueError naming --milestones."""
    try:
        milestones = sorted(int(m) for m in str(text).split(","))
    except ValueError:
        milestones = None
    if not milestones or milestones[0] < 1:
        raise ValueError(f"--milestones must be iteration numbers (1 or more) separated by commas, such as 32000,48000; got {text!r}")
    return milestones


def _milestones(v):
    try:
        return isinstance(v, str) and bool(parse_milestones(v))
    except ValueError:
        return False


# key -> (test, what it must be, value when an older run's config lacks the key)
REQUIRED = object()
SCHEMA = {
    "depth": (lambda v: _int(8)(v) and (v - 2) % 6 == 0, "an integer 6n+2 (20, 32, 44, 56, 110, ...)", REQUIRED),
    "plain": (_one_of(True, False), "true or false", REQUIRED),
    "shortcut": (_one_of("A", "B", "C"), '"A", "B" or "C"', REQUIRED),
    "backend": (_one_of("numpy", "cupy"), '"numpy" or "cupy"', REQUIRED),
    "batch_size": (_int(1), "an integer >= 1", REQUIRED),
    "lr": (_number(0, low_open=True), "a number > 0", REQUIRED),
    "momentum": (_number(0, 1), "a number in [0, 1]", REQUIRED),
    "weight_decay": (_number(0), "a number >= 0", REQUIRED),
    "iterations": (_int(1), "an integer >= 1", REQUIRED),
    "epochs": (_optional(_number(0, low_open=True)), "null or a number > 0", REQUIRED),
    "milestones": (_milestones, 'iterations >= 1 separated by commas, such as "32000,48000"', REQUIRED),
    "warmup": (_one_of(True, False), "true or false", REQUIRED),
    "data_dir": (_optional(lambda v: isinstance(v, str) and v != ""), "null or a folder", REQUIRED),
    "out": (lambda v: isinstance(v, str) and v != "", "a folder name (not empty)", REQUIRED),
    "seed": (_int(0), "an integer >= 0", REQUIRED),
    "eval_every": (_int(1), "an integer >= 1", REQUIRED),
    "subset": (_optional(_int(1)), "null or an integer >= 1", REQUIRED),
    "test_subset": (_optional(_int(1)), "null or an integer >= 1", None),
    "validation": (_int(0), "an integer >= 0", 0),
    "dtype": (_one_of("float32", "float64"), '"float32" or "float64"', "float32"),
    "stop_after_minutes": (_optional(_number(0)), "null or a number >= 0", None),
    "checkpoint_minutes": (_number(0, low_open=True), "a number > 0", 10.0),
    "progress": (_one_of(True, False), "true or false", True),
    "sync_bn": (_one_of(True, False), "true or false", True),
}
# settings a resumed run may change; the others define the experiment and stay as recorded
RESUMABLE = {"backend", "iterations", "epochs", "milestones", "eval_every", "data_dir",
             "stop_after_minutes", "checkpoint_minutes", "progress", "out"}


def check_config(config, source):
    """``config`` with keys that older runs lack filled in; RunDirError naming ``source`` and the
    key for an unknown key, a missing one, or a value of the wrong type or range."""
    if not isinstance(config, dict):
        raise RunDirError(f"{source} does not hold a JSON object of settings")
    unknown = sorted(set(config) - set(SCHEMA))
    if unknown:
        raise RunDirError(f"{source} has unknown settings {unknown}; remove them (known: {', '.join(SCHEMA)})")
    checked = {}
    for key, (test, meaning, default) in SCHEMA.items():
        if key not in config:
            if default is REQUIRED:
                raise RunDirError(f"{source} lacks the setting {key!r}")
            checked[key] = default
        elif not test(config[key]):
            raise RunDirError(f"{source}: {key} is {json.dumps(config[key])}, it must be {meaning}")
        else:
            checked[key] = config[key]
    return checked


def disagreements(recorded, other):
    """The settings that define the experiment and differ between two configs: [(key, a, b)]."""
    return [(k, recorded.get(k), other.get(k)) for k in SCHEMA
            if k not in RESUMABLE and recorded.get(k) != other.get(k)]


# ----- what a checkpoint's header must hold ------------------------------------------------------

META_SCHEMA = {
    "iteration": _int(0),
    "best": lambda v: isinstance(v, dict) and _optional(_number(0, 1))(v.get("test_error")) and _optional(_int(0))(v.get("iteration")),
    "warming_up": _one_of(True, False),
    "recent_errors": lambda v: isinstance(v, list) and all(_number(0, 1)(e) for e in v),
    "train_seconds": _number(0),
    "wall_seconds": _number(0),
    "train_images": _int(1),
    "interval": lambda v: isinstance(v, dict) and set(v) == {"loss", "batches", "errors", "images", "seconds"}
    and all(_number(0)(x) for x in v.values()),
    "config": lambda v: isinstance(v, dict),
}
META_ADDED_LATER = {"train_images": None}  # entries that checkpoints of older versions lack


def check_meta(meta, path):
    """RunDirError naming the entry when a checkpoint's header is not what the trainer writes."""
    for key, test in META_SCHEMA.items():
        if key not in meta and key in META_ADDED_LATER:
            meta[key] = META_ADDED_LATER[key]
        elif key not in meta or not test(meta[key]):
            raise RunDirError(f"checkpoint {path} is damaged or was not written by tinyres.train (its "
                              f"{key!r} entry is missing or invalid); restore it from a copy, or start "
                              "the run again with another --out")
    row = meta.get("row")
    if row is not None and not (isinstance(row, dict) and _int(0)(row.get("iteration")) and row["iteration"] <= meta["iteration"]
                                and all(_number(-math.inf)(v) for v in row.values())):
        raise RunDirError(f"checkpoint {path} is damaged or was not written by tinyres.train (its 'row' entry is "
                          "invalid); restore it from a copy, or start the run again with another --out")
    meta["config"] = check_config(meta["config"], f"the settings recorded in {path}")
    if meta["iteration"] > meta["config"]["iterations"]:  # (a run stops at its length)
        raise RunDirError(f"checkpoint {path} is damaged or was not written by tinyres.train (it is at iteration "
                          f"{meta['iteration']} of a {meta['config']['iterations']}-iteration run); restore it from a copy")
    return meta


# ----- the directory -----------------------------------------------------------------------------

class RunDir:
    """The files of one run directory. Every write goes through here."""

    def __init__(self, path):
        self.path = path
        self._lock = None

    def file(self, name):
        return os.path.join(self.path, name)

    def has_checkpoint(self):
        return os.path.lexists(self.file(CHECKPOINT))

    # -- creating and locking --
    def claim(self):
        """Create the folder if needed and take its lock; RunDirError if it is not a writable
        folder or another process holds it. The lock lasts as long as this process (or
        :meth:`release`)."""
        import fcntl

        if not self.path:
            raise RunDirError("--out is empty: give the folder the run writes to")
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise RunDirError(f"--out {self.path} is a file, not a folder: choose another --out")
        for _ in range(10):  # (again if a process releasing a folder it made removes it under us)
            self._created = not os.path.exists(self.path)
            try:
                os.makedirs(self.path, exist_ok=True)
                fd = os.open(self.file(LOCK), os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:
                continue
            except OSError as error:
                raise RunDirError(f"cannot write to {self.path} ({error.strerror}): choose another --out, or fix its permissions") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RunDirError(f"{self.path} is in use by process {holder}, which is training or evaluating "
                                  "there; wait for it to end (or stop it) before starting another run in it") from None
            if _same_file(fd, self.file(LOCK)):
                break
            os.close(fd)  # locked a file that a process releasing the folder had just removed: again
        else:
            raise RunDirError(f"{self.path} keeps disappearing while this process claims it: another process is "
                              "removing it; stop that one, or choose another --out")
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock = fd
        return self

    def release(self):
        """Drop the lock; a folder this process created and left empty is removed again."""
        if self._lock is None:
            return
        if self._created and os.listdir(self.path) == [LOCK]:  # (removed while still locked; a process
            os.remove(self.file(LOCK))                         # that opened the file before locks a removed
            with contextlib.suppress(OSError):                 # file, which claim notices and starts again;
                os.rmdir(self.path)                            # one that made a new .lock keeps the folder)
        os.close(self._lock)  # closing the descriptor drops the lock
        self._lock = None

    # -- the checkpoint --
    def save_checkpoint(self, arrays, meta):
        self._check_not_a_folder(CHECKPOINT)
        needed = sum(a.nbytes for a in arrays.values()) + len(json.dumps(meta))
        with self._disk_full_is_an_error(CHECKPOINT, needed):
            checkpoint.save(self.file(CHECKPOINT), arrays, meta)

    def load_checkpoint(self, read_arrays=True):
        """(arrays, meta) of the checkpoint, its header checked; RunDirError when it is missing,
        damaged or not the trainer's."""
        path = self.file(CHECKPOINT)
        if not os.path.lexists(path):
            raise RunDirError(f"{self.path} has no {CHECKPOINT}: nothing to resume or evaluate (not a run directory of "
                              "python -m tinyres.train, or its run was stopped before it saved one)")
        self._check_not_a_folder(CHECKPOINT)
        try:
            arrays, meta = checkpoint.load(path, read_arrays)
        except (ValueError, OSError) as error:
            raise RunDirError(str(error)) from None
        if not isinstance(meta, dict):
            raise RunDirError(f"checkpoint {path} is damaged or was not written by tinyres.train (no settings in its header); restore it from a copy")
        missing = [k for k in ("data.mean",) if k not in arrays]
        if missing:
            raise RunDirError(f"checkpoint {path} lacks {missing}: it was not written by tinyres.train; restore it from a copy")
        return arrays, check_meta(meta, path)

    # -- config.json --
    def write_config(self, config):
        with self._disk_full_is_an_error(CONFIG, 4096):
            checkpoint.write_json(self.file(CONFIG), config)

    def read_config(self):
        """The settings in config.json, checked against the schema (None when there is no file)."""
        path = self.file(CONFIG)
        if not os.path.lexists(path):
            return None
        try:
            value = checkpoint.read_json(path)
        except ValueError as error:
            raise RunDirError(f"{error}; delete it: the next --resume rewrites it from the checkpoint") from None
        return check_config(value, path)

    def recorded_config(self, meta):
        """The checkpoint's settings, after checking that config.json (if any) agrees with them."""
        recorded = meta["config"]
        written = self.read_config()
        differ = disagreements(recorded, written) if written is not None else []
        if differ:
            detail = ", ".join(f"{k} (config.json: {json.dumps(b)}, checkpoint: {json.dumps(a)})" for k, a, b in differ)
            raise RunDirError(
                f"{self.file(CONFIG)} disagrees with the checkpoint, the run's record, on {detail}: it was "
                "edited or comes from another run. Delete it (the next --resume rewrites it from the "
                "checkpoint) or put back the run's own files")
        return recorded

    # -- metrics.csv --
    def metrics(self):
        """The rows of metrics.csv as dicts of strings ([] when there is none). A last line without
        its line end is not a row yet: the trainer is writing it, or a crash cut it short."""
        return self._read_metrics()[1]

    def _read_metrics(self):
        """(the columns its first line names, or None without one; its complete rows)."""
        text = self._metrics_text()
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]
        try:
            reader = csv.DictReader(text.splitlines())
            return reader.fieldnames, list(reader)
        except csv.Error as error:  # (Python 3.10: a NUL byte, as a power cut can leave)
            raise RunDirError(f"{self.file(METRICS)} is damaged ({error}); delete it: it is a log, the "
                              "checkpoint does not need it") from None

    def _metrics_text(self):
        path = self.file(METRICS)
        if not os.path.lexists(path):
            return ""
        self._check_not_a_folder(METRICS)
        try:
            with open(path, newline="", encoding="utf-8") as f:
                return f.read()
        except UnicodeDecodeError:
            raise RunDirError(f"{path} is not text (a damaged file); delete it: it is a log, the checkpoint "
                              "does not need it") from None

    def append_metrics(self, row):
        """Add ``row`` to metrics.csv, in the order of the columns its first line names, and sync it
        to disk (once per evaluation: a power cut keeps the rows the checkpoint was written after)."""
        self._check_not_a_folder(METRICS)
        path = self.file(METRICS)
        columns = self._read_metrics()[0] or list(row)
        if set(columns) != set(row):
            raise self._other_columns(columns, row)
        with self._disk_full_is_an_error(METRICS, 1024), open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            if f.tell() == 0:
                writer.writeheader()
            writer.writerow(row)
            f.flush()
            os.fsync(f.fileno())

    def repair_metrics(self, iteration, row=None):
        """Make metrics.csv agree with a checkpoint at ``iteration``: drop a half-written last
        line and rows past it, and add the checkpoint's own ``row`` if it is missing."""
        path = self.file(METRICS)
        fields, rows = self._read_metrics()  # (a line cut short by a crash is left out)
        if fields and row is not None and set(fields) != set(row):  # refused now, before training
            raise self._other_columns(fields, row)
        kept = []
        for number, r in enumerate(rows, start=2):
            try:
                at = int(r["iteration"])
            except (KeyError, TypeError, ValueError):
                raise RunDirError(f"{path} line {number} is not a metrics row (iteration {r.get('iteration')!r}); "
                                  "delete that line, or the file (it is a log: the checkpoint does not need it)") from None
            if at <= iteration:
                if not all(_is_number(value) for value in r.values()):
                    raise RunDirError(f"{path} line {number} (iteration {at}) holds a value that is not a number: it is "
                                      "damaged. Delete that line; --resume then writes the checkpoint's row back")
                kept.append(r)
        if row is not None and not any(int(r["iteration"]) == row["iteration"] for r in kept):
            kept.append(row)
            fields = fields or list(row)
        if fields is None:
            return
        partial = path + ".tmp"
        with self._disk_full_is_an_error(METRICS, 1024 * (len(kept) + 1)), open(partial, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)
        os.replace(partial, path)

    # -- helpers --
    def _other_columns(self, columns, row):
        return RunDirError(f"{self.file(METRICS)} has the columns {', '.join(columns)}, this trainer writes "
                           f"{', '.join(row)}: it comes from another version of tinyres or was edited; move it away "
                           "(it is a log, the checkpoint does not need it) and --resume writes a new one")

    def _check_not_a_folder(self, name):
        if os.path.isdir(self.file(name)):
            raise RunDirError(f"{self.file(name)} is a folder; the run keeps a file there. Move the folder away")

    @contextlib.contextmanager
    def _disk_full_is_an_error(self, name, needed):
        """Turn a full disk during a write of ``name`` into a RunDirError, the partial file removed."""
        try:
            yield
        except OSError as error:
            if error.errno not in DISK_FULL:
                raise
            path = self.file(name)
            if os.path.exists(path + ".tmp"):
                os.remove(path + ".tmp")
            free = shutil.disk_usage(self.path).free
            raise RunDirError(f"the disk is full: writing {path} needs about {needed / 1e6:.1f} MB, "
                              f"{free / 1e6:.1f} MB are free. The previous {name} is intact; free "
                              "some space, then continue with --resume") from None


# ----- reading runs, for plots and tables --------------------------------------------------------

def build_model(config):
    """The network a run's settings describe, in their dtype, on the host."""
    from tinyres.models import cifar_resnet

    return cifar_resnet(config["depth"], config["plain"], config["shortcut"]).astype(config["dtype"])


def run_name(config):
    """'ResNet-56' or 'plain-56'."""
    return f"{'plain' if config['plain'] else 'ResNet'}-{config['depth']}"


@dataclass
class Run:
    """A finished or interrupted training run."""

    path: str
    config: dict
    metrics: dict  # column name -> NumPy array
    header: str  # log.txt's first "#" lines: when, where and with which command it ran ("" if none)

    @property
    def name(self):
        return run_name(self.config)

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
                f"{self.path} has no evaluation logged yet (no complete row in metrics.csv); its first "
                f"row is written after {self.config.get('eval_every', '--eval-every')} iterations"
            )
        return self


# the columns of metrics.csv that every version of the trainer has written, and plots and tables read
LOGGED_COLUMNS = ("iteration", "lr", "train_error", "test_error", "train_seconds")


def _same_file(fd, path):
    """Whether the open ``fd`` is the file now at ``path``."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _is_number(text):
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


def load(path):
    """Read ``config.json``, ``metrics.csv`` (absent until the first evaluation) and, if present,
    the header of ``log.txt``. FileNotFoundError if ``path`` is not a run directory."""
    if not os.path.isfile(os.path.join(path, CONFIG)):
        if os.path.isfile(os.path.join(path, CHECKPOINT)):
            raise FileNotFoundError(f"{path} has no {CONFIG}; python -m tinyres.train --out {path} --resume writes it "
                                    "again from the checkpoint")
        problem = f"has no {CONFIG}" if os.path.isdir(path) else "does not exist"
        raise FileNotFoundError(f"{path} {problem}: give a run directory written by python -m tinyres.train")
    run_dir = RunDir(path)
    config = run_dir.read_config()
    if os.path.isfile(run_dir.file(CHECKPOINT)):  # the run's record: an edited config.json is refused
        run_dir.recorded_config(run_dir.load_checkpoint(read_arrays=False)[1])  # (its header only)
    rows = run_dir.metrics()
    columns = rows[0].keys() if rows else []
    lacking = [c for c in LOGGED_COLUMNS if c not in columns] if rows else []  # no rows yet: nothing to read
    if lacking:
        raise RunDirError(f"{run_dir.file(METRICS)} lacks the column{'s' * (len(lacking) > 1)} {', '.join(lacking)} (its first line names the "
                          f"columns): it is damaged or was edited; put back the run's own file")
    try:
        metrics = {c: np.array([float(r[c]) for r in rows]) for c in columns}
    except (TypeError, ValueError):
        line = next(number for number, r in enumerate(rows, start=2) if not all(_is_number(r[c]) for c in columns))
        raise RunDirError(f"{run_dir.file(METRICS)} line {line} holds a value that is not a number: it is damaged. "
                          f"Delete that line; python -m tinyres.train --out {path} --resume then writes the checkpoint's "
                          "row back") from None
    return Run(path, config, metrics, _log_header(os.path.join(path, "log.txt")))


def _log_header(log):
    """The "#" lines that open log.txt (date, machine, commit, BLAS kernel, command), joined by
    " | " ("" without a log)."""
    if not os.path.exists(log):
        return ""
    lines = []
    with open(log, errors="replace") as f:
        for line in f:
            if not line.startswith("#"):
                break
            lines.append(line.strip().lstrip("# "))
    return " | ".join(lines)


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
