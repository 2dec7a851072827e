"""Train the paper's CIFAR-10 networks with the paper's recipe.

    python -m tinyres.train --depth 56                   # ResNet-56, NumPy on the CPU
    python -m tinyres.train --depth 56 --plain           # its plain counterpart
    python -m tinyres.train --depth 110 --backend cupy   # on an NVIDIA GPU (warm-up is on)
    python -m tinyres.train --out runs/r56 --resume      # continue an interrupted run
    mpiexec -n 2 python -m tinyres.train --depth 56      # data-parallel: 2 processes, 64 images each

Defaults are section 4.2 of He et al. (2015): SGD with momentum 0.9 and weight decay 1e-4 on
mini-batches of 128, learning rate 0.1 divided by 10 at 32k and 48k iterations, stop at 64k; for
110 layers and deeper, 0.01 until the training error is below 80%, then 0.1 ("warm-up"). With
--iterations or --epochs the two divisions move to 50% and 75% of the run, where the paper has
them, unless --milestones says otherwise.

The run directory (--out) receives:
    config.json     every setting, as resolved
    metrics.csv     a row per evaluation: iteration, epoch, learning rate (of the last step
                    before it), train loss and error (averaged since the last evaluation), test
                    (and validation) loss and error,
                    training time and wall time (with evaluations) so far, images per second
    checkpoint.npz  model, optimizer, data position, counters and settings, written atomically
                    when the run starts, at every evaluation, every --checkpoint-minutes (10) and
                    when you press Ctrl-C; --resume continues from it (on the CPU with the same
                    seed, bit for bit as if never interrupted)
The checkpoint is the run's record (config.json is a copy, checked against it); one process at a
time writes a run directory (see tinyres/runs.py for what is guaranteed). A resumed run keeps the
settings that define the experiment; it may change its length (the default milestones move with
it), its milestones, the backend, the data location (the same images) and the evaluation and
checkpoint intervals. A loss, test loss or weight that becomes NaN or infinite stops the run with
a message, and the last good checkpoint stays. Mistakes (a bad option, a damaged file, a full
disk, a folder in use) are one line, "error: ...", with the fix, and exit status 2.

Under mpiexec (pip install -e '.[mpi]'), every process ("rank") takes an equal part of each
mini-batch of --batch-size images, gradients are averaged over the ranks once per step, and rank
0 alone writes the run directory and prints. --sync-bn (the default) computes batch-norm
statistics over the whole mini-batch, so any number of ranks trains the network one process
trains; --no-sync-bn normalises each rank's part on its own (the paper trained on two GPUs but
does not say which its batch norm did). A run may resume with another number of ranks (see tinyres/distributed.py and the README).
"""

import tinyres  # noqa: I001  (first: it configures OpenBLAS before NumPy starts it)

import argparse
import math
import os
import signal
import sys
import time
import numpy as np

from tinyres import distributed, runs
from tinyres.cli import ArgumentParser, UsageError, reporting_usage_errors
from tinyres.data import DatasetError, SplitError, cifar10_loaders
from tinyres.evaluate import evaluate
from tinyres.nn.functional import cross_entropy
from tinyres.optim import SGD, MultiStepLR, WarmupUntilError
from tinyres.runs import parse_milestones

DEFAULTS = {
    "depth": 20, "plain": False, "shortcut": "A", "backend": "numpy", "batch_size": 128,
    "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "iterations": None, "epochs": None,
    "milestones": None, "warmup": None, "data_dir": None, "out": None, "seed": 0,
    "eval_every": None, "subset": None, "test_subset": None, "validation": 0, "dtype": "float32",
    "stop_after_minutes": None, "checkpoint_minutes": 10.0, "progress": True, "sync_bn": True,
}
PAPER_ITERATIONS = 64_000
PER_INVOCATION = {"stop_after_minutes", "progress"}  # apply to one command, not to the run


class TrainingDiverged(RuntimeError):
    pass


def default_milestones(iterations):
    """Where the paper divides the learning rate, scaled to a run's length: 50% and 75% (32k and
    48k of 64k)."""
    return f"{max(1, iterations // 2)},{max(1, iterations * 3 // 4)}"


def check_settings(given):
    """Refuse options that cannot make a run, naming the option (before anything is read or
    written). ``given`` holds the options given on the command line."""
    for key, value in given.items():
        test, meaning, _ = runs.SCHEMA.get(key, (None, None, None))
        if key == "milestones":
            parse_milestones(value)
        elif test is not None and value is not None and not test(value):
            raise ValueError(f"--{key.replace('_', '-')} must be {meaning}, got {value}")


def parse_args(argv=None):
    p = ArgumentParser(prog="python -m tinyres.train", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    a = p.add_argument
    a("--depth", type=int, help="6n+2: 20, 32, 44, 56, 110, 1202, ... (default 20)")
    a("--plain", action="store_true", default=None, help="the plain net: the same layers without shortcuts")
    a("--shortcut", choices=["A", "B", "C"], help="A: identity + zero channels (default), B: projections where the shape changes, C: projections everywhere")
    a("--backend", choices=["numpy", "cupy"], help="numpy (CPU, default) or cupy (NVIDIA GPU)")
    a("--batch-size", type=int, help="mini-batch size (default 128)")
    a("--lr", type=float, help="learning rate (default 0.1)")
    a("--momentum", type=float, help="SGD momentum (default 0.9)")
    a("--weight-decay", type=float, help="L2 weight decay (default 1e-4)")
    a("--iterations", type=int, help=f"training iterations (default {PAPER_ITERATIONS})")
    a("--epochs", type=float, help="training length in passes over the training images (instead of --iterations)")
    a("--milestones", help="comma-separated iterations where the learning rate is divided by 10 (default: 50%% and 75%% of the run, 32000,48000 for 64k)")
    a("--warmup", action=argparse.BooleanOptionalAction, default=None, help="lr 0.01 until training error < 80%% (default: on for depth >= 110)")
    a("--data-dir", help="folder with cifar-10-batches-bin/ or cifar-10-binary.tar.gz (default $TINYRES_DATA or ~/.cache/tinyres; downloaded if missing)")
    a("--out", help="run directory (default runs/<name>-seed<seed>)")
    a("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    a("--seed", type=int, help="seed of the initial weights and of the data order (default 0)")
    a("--eval-every", type=int, help="iterations between evaluations and checkpoints (default: one epoch)")
    a("--subset", type=int, help="train on the first N training images only (quick experiments)")
    a("--test-subset", type=int, help="evaluate on the first N test images only (quick experiments; default all 10,000)")
    a("--validation", type=int, help="hold out the last N training images as a validation set (the paper's 45k/5k split: 5000)")
    a("--dtype", choices=["float32", "float64"], help="float32 (default) or float64")
    a("--stop-after-minutes", type=float, help="checkpoint and stop after this much wall time (resume later; 0: after one step)")
    a("--checkpoint-minutes", type=float, help="also checkpoint between evaluations, every this many minutes (default 10)")
    a("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar (log lines only)")
    a("--sync-bn", action=argparse.BooleanOptionalAction, default=None,
      help="under mpiexec: batch-norm statistics over the whole mini-batch, all ranks' images (default), or each rank's own (--no-sync-bn)")
    return p.parse_args(argv)


def run_folder(args):
    """The run directory: --out, or runs/<name>-seed<seed> for a fresh run."""
    if args.out is not None:
        return args.out
    if args.resume:
        raise UsageError("--resume needs --out RUN_DIR, the directory of the run to continue", every_rank=True)
    config = {**DEFAULTS, **{k: v for k, v in vars(args).items() if v is not None}}
    return os.path.join("runs", f"{runs.run_name(config).lower()}-seed{config['seed']}")


def resolve_config(args, run_dir):
    """(config, checkpoint): DEFAULTS, then (when resuming) the checkpoint's record, then what was
    given on the command line; checkpoint is (arrays, meta) when resuming, else None."""
    given = {k: v for k, v in vars(args).items() if v is not None and k != "resume"}
    given["out"] = run_dir.path
    if given.get("data_dir"):
        given["data_dir"] = os.path.abspath(given["data_dir"])  # the run can be resumed from anywhere
    if not args.resume:
        _check_fresh_folder(run_dir, {**DEFAULTS, **given})
        return {**DEFAULTS, **given}, None
    arrays, meta = run_dir.load_checkpoint()
    saved = run_dir.recorded_config(meta)
    changed = [(k, saved.get(k), v) for k, v in given.items() if k not in runs.RESUMABLE and saved.get(k) != v]
    if changed:
        detail = ", ".join(f"--{k.replace('_', '-')} {new} (run has {old})" for k, old, new in changed)
        raise UsageError(f"a resumed run keeps its settings; these differ from its checkpoint: {detail}")
    saved = {k: v for k, v in saved.items() if k not in PER_INVOCATION}
    config = {**DEFAULTS, **saved, **given}
    new_length = "iterations" in given or "epochs" in given
    if "iterations" in given:  # a new length replaces the saved one, whichever way it was given
        config["epochs"] = None
    if new_length and "milestones" not in given and saved.get("milestones") == default_milestones(saved.get("iterations") or 0):
        config["milestones"] = None  # the default milestones (50% and 75%) move with the length
    return config, (arrays, meta)


def _check_fresh_folder(run_dir, config):
    """A fresh run never overwrites another run's files."""
    if run_dir.has_checkpoint():
        raise UsageError(f"{run_dir.path} already holds a run (checkpoint.npz); continue it with --resume, or choose another --out")
    if not os.path.lexists(run_dir.file(runs.METRICS)):
        return
    try:
        earlier = run_dir.read_config()
    except runs.RunDirError:
        earlier = None
    if earlier is None or [k for k, _, _ in runs.disagreements(earlier, config) if config.get(k) is not None]:
        raise UsageError(
            f"{run_dir.path} holds metrics.csv from another run but no checkpoint.npz to resume "
            f"from; choose another --out, or delete {run_dir.file(runs.METRICS)} to start afresh there")
    # the same experiment, started before and lost its checkpoint: start again, keeping the old rows
    kept, k = run_dir.file(runs.METRICS + ".orphaned"), 1
    while os.path.lexists(kept):  # an earlier start's, kept too
        kept, k = run_dir.file(f"{runs.METRICS}.orphaned.{k}"), k + 1
    os.replace(run_dir.file(runs.METRICS), kept)


class Trainer:
    """One training run: model, optimizer, data, counters, and how to save and restore them."""

    def __init__(self, config, run_dir, comm):
        self.config = config
        self.backend = tinyres.get_backend(config["backend"])
        self.comm = comm  # the processes of this run: just this one without mpiexec
        self.comm.use(self.backend)
        self.run_dir = run_dir  # written by rank 0 alone
        self.dir = run_dir.path
        tinyres.manual_seed(config["seed"])
        self.model = runs.build_model(config).to(self.backend)
        if config["sync_bn"]:
            distributed.synchronize_batch_norm(self.model, self.comm)
        self.optimizer = SGD(self.model.parameters(), config["lr"], config["momentum"], config["weight_decay"])
        with self.comm.rank_zero_first():  # rank 0 downloads CIFAR-10 if it must, the others then read it
            self.train_data, self.eval_data, self.mean = cifar10_loaders(
                config["data_dir"], config["batch_size"], self.backend, config["seed"], config["subset"],
                config["validation"], dtype=config["dtype"], test_subset=config["test_subset"],
                rank=self.comm.rank, ranks=self.comm.size)
        batch = min(config["batch_size"], self.train_data.num_images)
        if batch % self.comm.size:
            raise distributed.BatchDoesNotSplit(
                f"a mini-batch of {batch} images does not split evenly over {self.comm.size} processes; "
                f"choose a --batch-size divisible by {self.comm.size}, or another number of processes")
        self.batches_per_epoch = len(self.train_data)
        self._resolve_schedule()
        self.iteration = 0
        self.best = {"test_error": None, "iteration": None}
        self.schedule = self.paper_schedule(config["warmup"])
        self.step_lr = self.optimizer.lr
        self.train_seconds = 0.0  # time in training steps
        self.wall_seconds = 0.0  # time in the training loop, evaluations included, over all resumes
        self._wall_mark = None
        self.interval = {"loss": 0.0, "batches": 0, "errors": 0, "images": 0, "seconds": 0.0}
        self.stop_reason = None  # "interrupted" (Ctrl-C) or "time limit", once every rank agrees
        self.stop_request = None  # the same, as this process saw it
        self.last_row = None  # the latest metrics row, kept in the checkpoint too
        self.saved_iteration = None  # iteration of the last checkpoint written
        self.bar = None  # the progress bar, while run() runs
        self._saved_at = time.monotonic()

    def _resolve_schedule(self):
        c = self.config
        if c["epochs"] is not None:  # the length in iterations follows from the epochs
            c["iterations"] = max(1, round(c["epochs"] * self.batches_per_epoch))
        elif c["iterations"] is None:
            c["iterations"] = PAPER_ITERATIONS
        if c["milestones"] is None:
            c["milestones"] = default_milestones(c["iterations"])
        self.milestones = parse_milestones(c["milestones"])
        if c["eval_every"] is None:
            c["eval_every"] = self.batches_per_epoch
        if c["warmup"] is None:
            c["warmup"] = c["depth"] >= 110

    # ----- the schedule ---------------------------------------------------------------------
    def paper_schedule(self, warming_up, recent_errors=()):
        """Section 4.2: the learning rate divided by 10 at each milestone and, for the warm-up, by
        10 more until the training error is below 80% (tinyres/lr_scheduler.py), set for the step
        after ``self.iteration``."""
        schedule = MultiStepLR(self.optimizer, self.milestones, gamma=0.1)
        schedule.load_state_dict({**schedule.state_dict(), "last_epoch": self.iteration})
        if not self.config["warmup"]:
            return schedule
        warmup = WarmupUntilError(schedule, factor=0.1, error=0.8, window=50)
        warmup.load_state_dict({**warmup.state_dict(), "active": warming_up, "recent": list(recent_errors)})
        return warmup

    def warming_up(self):
        return getattr(self.schedule, "active", False)

    def advance_schedule(self, batch_error):
        """After a step: count it, and set the rate of the next (the warm-up looks at the error)."""
        was_warming_up = self.warming_up()
        self.schedule.step(batch_error) if self.config["warmup"] else self.schedule.step()
        if was_warming_up and not self.warming_up():
            self.log(f"warm-up done at iteration {self.iteration}: training error below 80%, "
                     f"learning rate back to {self.config['lr']}")

    # ----- one step -------------------------------------------------------------------------
    def step(self, images, labels):
        """One SGD step on the mini-batch (this rank's part of it): (its mean loss, its errors)."""
        self.step_lr = self.optimizer.lr  # set by the schedule; logged as the last step's rate
        logits = self.model(images)
        loss = cross_entropy(logits, labels)
        errors = (logits.data.argmax(axis=1) != labels).sum()
        self.optimizer.zero_grad()
        loss.backward()
        # One Allreduce averages over the ranks: the gradients, the loss and the error rate, and
        # per-rank batch-norm statistics (so that every rank keeps the same). Alone, a no-op.
        measured = self.backend.xp.stack([loss.data, errors.astype(loss.dtype)])
        shared = [p.grad for p in self.optimizer.parameters if p.grad is not None] + [measured]
        if not self.config["sync_bn"]:
            shared += [buffer for _, buffer in self.model.named_buffers()]
        self.comm.average(shared)
        loss_value = float(measured[0])  # one device-to-host sync per step, for the NaN check and the log
        if not math.isfinite(loss_value):
            raise self.diverged(f"the loss became {loss_value}")
        self.optimizer.step()
        return loss_value, round(float(measured[1]) * self.comm.size)

    # ----- saving and restoring -------------------------------------------------------------
    def checkpoint_path(self):
        return self.run_dir.file(runs.CHECKPOINT)

    def diverged(self, what):
        last = (f"The last good checkpoint is {self.checkpoint_path()} (iteration {self.saved_iteration})"
                if self.saved_iteration is not None else "No checkpoint was written")
        remedy = "a lower --lr" if self.config["warmup"] else "a lower --lr or --warmup"
        return TrainingDiverged(f"{what} at iteration {self.iteration}: training diverged. {last}; try {remedy}.")

    def save(self):
        """Checkpoint, unless a weight has become NaN or infinite (then the last good one stays)."""
        weights = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        arrays = {**weights, **{f"optimizer.{k}": v for k, v in self.optimizer.state_dict().items()}}
        # first the collective check (weights, statistics, momenta), on every rank: a rank that
        # stopped alone on a check of its own would leave the others waiting for it
        self.comm.check_identical(arrays, f"at iteration {self.iteration}")
        bad = [name for name, value in weights.items() if not np.all(np.isfinite(value))]
        if bad:
            raise self.diverged(f"{len(bad)} weight arrays became NaN or infinite ({', '.join(bad[:3])}, ...)")
        if self.comm.rank == 0:  # rank 0 alone writes
            arrays["data.mean"] = self.mean
            meta = {
                "iteration": self.iteration, "best": self.best, "warming_up": self.warming_up(),
                "recent_errors": list(getattr(self.schedule, "recent", [])), "train_seconds": self.train_seconds,
                "wall_seconds": self._wall_now(), "train_images": self.train_data.num_images,
                "interval": self.interval, "config": self.config, "row": self.last_row,
            }
            self.run_dir.save_checkpoint(arrays, meta)
        self.saved_iteration, self._saved_at = self.iteration, time.monotonic()  # once it is on disk

    def restore(self, arrays, meta):
        """Continue from a checkpoint (read by resolve_config), after checking that it belongs to
        this run's network and data."""
        c = self.config
        count = meta["train_images"]  # None in checkpoints older than this check
        if count not in (None, self.train_data.num_images) or not np.array_equal(arrays["data.mean"], self.mean):
            raise ValueError(f"the training images in {c['data_dir'] or 'the default data folder'} are not the ones this run "
                             "was trained on (their number or pixel mean differs); resume with the --data-dir the run used")
        if c["iterations"] < meta["iteration"]:  # known only now when the length was given in epochs
            length = f"--iterations {c['iterations']}" if c["epochs"] is None else f"--epochs {c['epochs']:g} ({c['iterations']} iterations)"
            raise UsageError(f"{self.dir} is at iteration {meta['iteration']} already; {length} would end it in the past. "
                             f"Give a longer run, or evaluate it: python -m tinyres.evaluate {self.dir}", every_rank=True)
        model = {k[6:]: v for k, v in arrays.items() if k.startswith("model.")}
        optimizer = {k[10:]: v for k, v in arrays.items() if k.startswith("optimizer.")}
        try:
            self.model.load_state_dict(model)
            self.optimizer.load_state_dict(optimizer)
        except (KeyError, ValueError) as error:
            raise ValueError(f"{self.checkpoint_path()} does not fit {runs.run_name(c)} ({error}); it was damaged or "
                             "comes from another run: put back the run's own checkpoint") from None
        self.iteration, self.best = meta["iteration"], meta["best"]
        self.schedule = self.paper_schedule(meta["warming_up"], meta["recent_errors"])
        self.train_seconds, self.interval = meta["train_seconds"], meta["interval"]
        self.wall_seconds, self.last_row = meta["wall_seconds"], meta.get("row")
        self.saved_iteration = self.iteration
        if self.comm.rank == 0:
            self.run_dir.repair_metrics(self.iteration, self.last_row)
        self.log(f"resumed {self.dir} at iteration {self.iteration}")

    # ----- logging ----------------------------------------------------------------------------
    def log(self, message):
        if self.comm.rank != 0:  # rank 0 alone prints
            return
        if self.bar is not None:
            self.bar.write(message)
        else:
            print(message, flush=True)

    def record_evaluation(self):
        """Evaluate, append a metrics row, keep the best test error, checkpoint, print a line."""
        seen = max(self.interval["images"], 1)
        row = {
            "iteration": self.iteration,
            "epoch": round(self.iteration / self.batches_per_epoch, 3),
            "lr": float(f"{self.step_lr:.6g}"),  # the last step's
            "train_loss": round(self.interval["loss"] / max(self.interval["batches"], 1), 5),
            "train_error": round(self.interval["errors"] / seen, 5),
        }
        for name, loader in self.eval_data.items():
            loss, error = evaluate(self.model, loader, self.comm)
            if not math.isfinite(loss):
                raise self.diverged(f"the {name} loss became {loss}")
            row[f"{name}_loss"], row[f"{name}_error"] = round(loss, 5), round(error, 5)
        self.model.train()
        row["train_seconds"] = round(self.train_seconds, 1)
        row["wall_seconds"] = round(self._wall_now(), 1)
        row["images_per_sec"] = round(self.interval["images"] / max(self.interval["seconds"], 1e-9), 1)
        if self.best["test_error"] is None or row["test_error"] < self.best["test_error"]:
            self.best = {"test_error": row["test_error"], "iteration": self.iteration}
        self.interval = {"loss": 0.0, "batches": 0, "errors": 0, "images": 0, "seconds": 0.0}
        self.last_row = row
        self.save()  # first the checkpoint, then the row it covers
        if self.comm.rank == 0:
            self.run_dir.append_metrics(row)
        val = f" | val err {row['val_error']:.2%}" if "val_error" in row else ""
        self.log(f"iter {self.iteration:6d} | train loss {row['train_loss']:.4f} err {row['train_error']:.2%} | "
                 f"test loss {row['test_loss']:.4f} err {row['test_error']:.2%}{val} | lr {row['lr']:g} | "
                 f"{row['images_per_sec']:.0f} img/s")
        return row

    def _wall_now(self):
        """Wall time of this run so far: earlier commands' share plus this command's."""
        if self._wall_mark is None:
            return self.wall_seconds
        return self.wall_seconds + time.monotonic() - self._wall_mark

    # ----- the loop ---------------------------------------------------------------------------
    def run(self):
        from tqdm import tqdm

        c = self.config
        total = c["iterations"]
        deadline = None if c["stop_after_minutes"] is None else time.monotonic() + 60 * c["stop_after_minutes"]
        self.bar = tqdm(total=total, initial=self.iteration, disable=not c["progress"] or self.comm.rank != 0, dynamic_ncols=True,
                        unit="it", smoothing=0.05, file=sys.stderr)
        previous_handler = signal.signal(signal.SIGINT, self._on_interrupt)
        self._wall_mark = time.monotonic()
        try:
            while self.iteration < total and self.stop_reason is None:
                epoch, start = divmod(self.iteration, self.batches_per_epoch)
                for images, labels in self.train_data.epoch(epoch, start):
                    began = time.perf_counter()
                    loss, errors = self.step(images, labels)
                    self.iteration += 1
                    self._count(loss, errors, len(labels) * self.comm.size, time.perf_counter() - began)
                    self._evaluate_save_or_stop(total, deadline)
                    if self.iteration >= total or self.stop_reason is not None:
                        break
            if self.iteration >= total:
                self.stop_reason = None  # finished: a Ctrl-C during the last evaluation changes nothing
            elif self.stop_reason is not None:
                if self.saved_iteration != self.iteration:
                    self.save()
                self.log(f"checkpoint saved at iteration {self.iteration}: continue with --out {self.dir} --resume")
        finally:
            self.wall_seconds, self._wall_mark = self._wall_now(), None
            signal.signal(signal.SIGINT, previous_handler)
            self.bar.close()
            self.bar = None

    def _count(self, loss, errors, n, seconds):
        """Add a step of n images to the counters, the schedule and the progress bar."""
        self.train_seconds += seconds
        for key, value in (("loss", loss), ("batches", 1), ("errors", errors), ("images", n), ("seconds", seconds)):
            self.interval[key] += value
        self.advance_schedule(errors / n)
        self.bar.set_postfix(loss=f"{loss:.3f}", err=f"{errors / n:.1%}", lr=f"{self.step_lr:g}",
                             img_s=f"{n / seconds:.0f}", refresh=False)
        self.bar.update(1)

    def _evaluate_save_or_stop(self, total, deadline):
        """After a step: evaluate (and checkpoint) on schedule, else checkpoint when it is time;
        and stop after this step on Ctrl-C or --stop-after-minutes (one that comes during an
        evaluation, after the next). Every rank decides both together, in one collective per step:
        saving compares their weights, and they must all stop after the same step."""
        c = self.config
        if deadline is not None and time.monotonic() > deadline and self.stop_request is None:
            self.log(f"--stop-after-minutes reached at iteration {self.iteration}")
            self.stop_request = "time limit"
        evaluating = self.iteration % c["eval_every"] == 0 or self.iteration == total
        due = not evaluating and time.monotonic() - self._saved_at > 60 * c["checkpoint_minutes"]
        save_due, self.stop_reason = self.comm.agree("due" if due else None, self.stop_request)
        if evaluating:
            self.record_evaluation()
        elif save_due:
            self.save()

    def _on_interrupt(self, signum, frame):
        """First Ctrl-C: finish the current step, checkpoint, stop. A second one: stop now."""
        if self.stop_request == "interrupted":
            raise KeyboardInterrupt
        self.stop_request = "interrupted"
        self.log("interrupted: finishing this step, then saving a checkpoint (Ctrl-C again to abort without saving)")


@reporting_usage_errors
def main(argv=None):
    args = parse_args(argv)
    given = {k: v for k, v in vars(args).items() if v is not None and k != "resume"}
    if "iterations" in given and "epochs" in given:
        raise UsageError("give --iterations or --epochs, not both", every_rank=True)
    try:
        check_settings(given)
    except ValueError as error:
        raise UsageError(str(error), every_rank=True) from None
    comm = distributed.world()
    run_dir = runs.RunDir(run_folder(args))
    try:
        # rank 0 owns the run directory: it takes the lock, reads the checkpoint and sends the
        # outcome (the settings and the checkpoint, or the error) to the others
        outcome = _claim_and_resolve(args, run_dir) if comm.rank == 0 else None
        outcome = comm.broadcast(outcome)
        if isinstance(outcome, str):  # every rank has it, from rank 0
            raise UsageError(outcome, every_rank=True)
        return _train(*outcome, run_dir, comm)
    except runs.RunDirError as error:
        raise UsageError(str(error)) from None
    except KeyboardInterrupt:
        print(f"interrupted before training started; {run_dir.path} is as it was", file=sys.stderr)
        return 130
    finally:
        run_dir.release()


def _claim_and_resolve(args, run_dir):
    """(config, checkpoint or None) for this command, or the message of the error that stops it."""
    try:
        run_dir.claim()
        return resolve_config(args, run_dir)
    except runs.RunDirError as error:
        return str(error)
    except UsageError as error:
        return error.message


def _train(config, saved, run_dir, comm):
    tinyres.backend.retain_freed_memory()
    try:
        trainer = Trainer(config, run_dir, comm)
        runs.check_config(config, "the settings")
        if saved is not None:
            trainer.restore(*saved)
    except (DatasetError, tinyres.BackendUnavailable, ValueError) as error:
        message = f"cannot resume: {error}" if saved is not None else str(error)
        raise UsageError(message, every_rank=isinstance(error, (distributed.BatchDoesNotSplit, SplitError))) from None
    if trainer.iteration >= config["iterations"]:  # its files stay as they are (a deleted config.json
        if comm.rank == 0 and not os.path.exists(run_dir.file(runs.CONFIG)):  # comes back from the record)
            run_dir.write_config(saved[1]["config"])
        trainer.log(f"{run_dir.path} is complete at iteration {trainer.iteration}; nothing to do")
        return 0
    if saved is None or config != saved[1]["config"]:
        trainer.save()  # the checkpoint records the run (and its new settings) before anything else
    if comm.rank == 0:
        run_dir.write_config(trainer.config)
    ranks = f" x {comm.size} processes ({'synchronized' if config['sync_bn'] else 'per-process'} batch norm)" if comm.size > 1 else ""
    trainer.log(f"{runs.run_name(config)} ({trainer.model.num_parameters() / 1e6:.2f}M parameters) on {trainer.backend.name}{ranks}, "
                f"{trainer.train_data.num_images} training images, {trainer.batches_per_epoch} batches/epoch, "
                f"{config['iterations']} iterations, lr {config['lr']} /10 at {trainer.milestones}"
                f"{', warm-up' if config['warmup'] else ''} -> {trainer.dir}")
    try:
        trainer.run()
    except (TrainingDiverged, distributed.RanksDiffer) as error:
        if comm.rank == 0:
            print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, nothing saved since the last checkpoint
        if comm.rank == 0:
            print(f"aborted after iteration {trainer.iteration} without saving; --resume continues from its "
                  f"checkpoint at iteration {trainer.saved_iteration}", file=sys.stderr)
        return 130
    if trainer.stop_reason == "interrupted":
        return 130
    if trainer.stop_reason == "time limit":
        return 0
    if trainer.best["test_error"] is not None:
        final = trainer.last_row
        trainer.log(f"done: best test error {trainer.best['test_error']:.2%} (iteration {trainer.best['iteration']}), "
                    f"final test error {final['test_error']:.2%} (iteration {final['iteration']}), "
                    f"{trainer.train_seconds / 60:.1f} min of training")
    return 0


if __name__ == "__main__":
    sys.exit(distributed.run(main))  # under mpiexec, one rank's error ends every rank
