"""The run directory's guarantees (tinyres/runs.py): one writer, the checkpoint as the source of
truth, metrics that never run ahead of the checkpoint, and a one-line error with the fix (exit
status 2) for every mistake a user can make, checked with real processes and a fuzz test."""

import errno
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyres import checkpoint, evaluate, report, runs, train
from tinyres.models import pretrained
from tinyres.cli import UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--depth", "8", "--subset", "48", "--batch-size", "8", "--no-progress"]  # 6 batches per epoch


def run(cifar_dir, out, *extra):
    return train.main(SMALL + ["--data-dir", str(cifar_dir), "--out", str(out), *extra])


def resume(out, *extra):
    return train.main(["--out", str(out), "--resume", "--no-progress", *extra])


def iteration_of(out):
    return checkpoint.load(str(out / "checkpoint.npz"))[1]["iteration"]


def logged_iterations(out):
    return [r["iteration"] for r in runs.RunDir(str(out)).metrics()]


def user_error(match, call, *args):
    """``call`` fails with a UsageError (exit status 2, message matching ``match``)."""
    with pytest.raises(UsageError, match=match) as caught:
        call(*args)
    assert caught.value.code == 2
    return str(caught.value)


def trainer_process(cifar_dir, out, *extra):
    env = {**os.environ, "PYTHONPATH": ROOT, "OPENBLAS_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "tinyres.train", *SMALL, "--data-dir", str(cifar_dir), "--out", str(out), *extra]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, seconds=60):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# ----- 1. one writer ---------------------------------------------------------------------------

def test_a_second_process_on_a_run_directory_is_refused_and_kill_9_leaves_no_stale_lock(cifar_dir, tmp_path):
    out = tmp_path / "run"
    first = trainer_process(cifar_dir, out, "--iterations", "100000", "--eval-every", "100000")
    try:
        wait_for(lambda: (out / "checkpoint.npz").exists())  # written when the run starts
        for extra in (["--iterations", "5"], ["--resume"]):
            second = trainer_process(cifar_dir, out, *extra)
            _, err = second.communicate(timeout=120)
            assert second.returncode == 2
            assert f"is in use by process {first.pid}" in err and "Traceback" not in err
        assert not (out / "metrics.csv").exists() and not (out / "checkpoint.npz.tmp").exists()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    third = trainer_process(cifar_dir, out, "--resume", "--iterations", "2")
    _, err = third.communicate(timeout=120)
    assert third.returncode == 0, err
    assert iteration_of(out) == 2 and logged_iterations(out) == ["2"]


# ----- 2. the checkpoint is the source of truth ------------------------------------------------

def test_evaluate_builds_the_network_the_checkpoint_records_not_an_edited_config(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "2") == 0
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "plain": True}))
    message = user_error(r"disagrees with the checkpoint.*plain \(config.json: true, checkpoint: false\)",
                         evaluate.main, [str(out), "--data-dir", str(cifar_dir)])
    assert "Delete it" in message
    user_error("disagrees with the checkpoint", resume, out, "--iterations", "3")
    os.remove(out / "config.json")  # the fix the message gives
    assert evaluate.main([str(out), "--data-dir", str(cifar_dir)]) == 0
    assert "ResNet-8 at iteration 2" in capsys.readouterr().out
    assert resume(out, "--iterations", "3") == 0
    assert json.loads((out / "config.json").read_text())["plain"] is False


@pytest.mark.parametrize("key, value, match", [
    ("seed", 5, r"disagrees.*seed \(config.json: 5, checkpoint: 0\)"),
    ("lr", 0.5, r"disagrees.*lr"),
    ("colour", "red", r"unknown settings \['colour'\]"),
    ("depth", [8], r"depth is \[8\], it must be an integer 6n\+2"),
    ("depth", "12", r"depth is \"12\""),
    ("batch_size", None, r"batch_size is null, it must be an integer >= 1"),
    ("eval_every", 16.5, r"eval_every is 16.5"),
    ("momentum", 2, r"momentum is 2, it must be a number in \[0, 1\]"),
    ("plain", 0, r"plain is 0, it must be true or false"),
    ("depth", "<missing>", r"lacks the setting 'depth'"),
])
def test_a_damaged_config_is_a_named_error_for_resume_and_evaluate(cifar_dir, tmp_path, key, value, match):
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "1") == 0
    config = json.loads((out / "config.json").read_text())
    if value == "<missing>":
        del config[key]
    else:
        config[key] = value
    (out / "config.json").write_text(json.dumps(config))
    before = (out / "checkpoint.npz").read_bytes()
    user_error(match, resume, out, "--iterations", "2")
    user_error(match, evaluate.main, [str(out), "--data-dir", str(cifar_dir)])
    assert (out / "checkpoint.npz").read_bytes() == before


# ----- 3. metrics.csv never runs ahead of the checkpoint ---------------------------------------

def test_a_half_written_last_line_is_dropped_and_the_checkpoints_row_restored(cifar_dir, tmp_path):
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "6", "--eval-every", "2", "--stop-after-minutes", "0") == 0
    assert resume(out, "--iterations", "6", "--stop-after-minutes", "0") == 0  # iteration 2: a row
    assert logged_iterations(out) == ["2"]
    text = (out / "metrics.csv").read_text()
    (out / "metrics.csv").write_text(text[:-7])  # the process died while writing the row
    assert resume(out) == 0
    assert logged_iterations(out) == ["2", "4", "6"]
    assert (out / "metrics.csv").read_text().startswith(text)  # the cut row came back whole


def test_a_reader_skips_the_row_being_written_and_names_a_damaged_line(cifar_dir, tmp_path):
    # report and plot read a run while it trains: the trainer may be halfway through a row
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "4", "--eval-every", "2") == 0
    text = (out / "metrics.csv").read_text()
    (out / "metrics.csv").write_text(text[:-4])  # "149.5\n" being written as "149"
    assert runs.load(str(out)).metrics["iteration"].tolist() == [2]
    lines = text.splitlines()
    (out / "metrics.csv").write_text("\n".join([lines[0], lines[1].replace(",", ",x", 1), lines[2]]) + "\n")
    with pytest.raises(runs.RunDirError, match=r"metrics.csv line 2 holds a value that is not a number"):
        runs.load(str(out))


def test_rows_follow_the_files_columns_and_another_versions_file_is_refused(tmp_path):
    run_dir = runs.RunDir(str(tmp_path / "run"))
    os.makedirs(run_dir.path)
    run_dir.append_metrics({"iteration": 1, "lr": 0.1})
    run_dir.append_metrics({"lr": 0.01, "iteration": 2})  # another order: written in the file's
    assert (tmp_path / "run" / "metrics.csv").read_text() == "iteration,lr\n1,0.1\n2,0.01\n"
    with pytest.raises(runs.RunDirError, match=r"has the columns iteration, lr, this trainer writes iteration, lr, wall_seconds"):
        run_dir.append_metrics({"iteration": 3, "lr": 0.01, "wall_seconds": 5})
    assert (tmp_path / "run" / "metrics.csv").read_text().endswith("2,0.01\n")  # nothing appended


def test_a_header_without_rows_still_decides_the_columns(tmp_path):
    run_dir = runs.RunDir(str(tmp_path / "run"))
    os.makedirs(run_dir.path)
    (tmp_path / "run" / "metrics.csv").write_text("iteration,old_column,lr\n")
    with pytest.raises(runs.RunDirError, match="has the columns iteration, old_column, lr"):
        run_dir.append_metrics({"iteration": 1, "lr": 0.5, "test_error": 0.1})


def test_a_lock_file_removed_while_claiming_is_not_taken_for_a_lock(tmp_path, monkeypatch):
    # one process releases a folder it made (removing .lock and the folder) just as another has
    # opened .lock: the second must not go on holding a lock on a removed file
    import fcntl

    path = str(tmp_path / "run")
    first = runs.RunDir(path).claim()
    real_flock = fcntl.flock

    def flock_just_after_the_first_releases(fd, operation):
        if first._lock is not None:
            first.release()
        return real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_just_after_the_first_releases)
    second = runs.RunDir(path).claim()
    assert os.path.samestat(os.fstat(second._lock), os.stat(os.path.join(path, runs.LOCK)))
    second.release()


def test_a_finished_run_gets_a_deleted_config_back_from_its_record(cifar_dir, tmp_path):
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "2", "--eval-every", "2") == 0
    written = json.loads((out / "config.json").read_text())
    (out / "config.json").unlink()
    assert resume(out) == 0
    assert json.loads((out / "config.json").read_text()) == written
    assert runs.load(str(out)).config == written


def test_a_checkpoint_past_its_runs_length_is_damaged(cifar_dir, tmp_path):
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "2", "--eval-every", "2") == 0
    arrays, meta = checkpoint.load(str(out / "checkpoint.npz"))
    checkpoint.save(str(out / "checkpoint.npz"), arrays, {**meta, "iteration": 5})
    for command in (lambda: evaluate.main([str(out), "--data-dir", str(cifar_dir)]), lambda: resume(out)):
        user_error(r"is damaged .*at iteration 5 of a 2-iteration run", command)


def test_what_readers_of_a_run_say_when_one_of_its_files_is_wrong(cifar_dir, tmp_path, monkeypatch):
    template = tmp_path / "run"
    assert run(cifar_dir, template, "--iterations", "2", "--eval-every", "1") == 0

    def copy(name):
        shutil.copytree(template, tmp_path / name)
        return tmp_path / name

    # a damaged row the checkpoint covers: resume refuses it, and deleting it as told works
    out = copy("value")
    lines = (out / "metrics.csv").read_text().splitlines()
    (out / "metrics.csv").write_text("\n".join([lines[0], lines[1].replace(",", ",abc", 1), lines[2]]) + "\n")
    user_error(r"line 2 \(iteration 1\) holds a value that is not a number.*Delete that line", resume, out)
    (out / "metrics.csv").write_text("\n".join([lines[0], lines[2]]) + "\n")
    assert resume(out) == 0 and logged_iterations(out) == ["2"]  # (the checkpoint's row is iteration 2's)
    # an edited config.json: report and plot refuse it as evaluate does
    out = copy("edited")
    (out / "config.json").write_text(json.dumps({**json.loads((out / "config.json").read_text()), "depth": 20}))
    with pytest.raises(runs.RunDirError, match=r"disagrees with the checkpoint.*depth \(config.json: 20, checkpoint: 8\)"):
        runs.load(str(out))
    # no config.json: the message says how to get it back
    out = copy("no_config")
    (out / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"has no config.json; python -m tinyres.train --out .* --resume writes it"):
        runs.load(str(out))
    # no checkpoint: a message for any reader, not only for --resume
    out = copy("no_checkpoint")
    (out / "checkpoint.npz").unlink()
    user_error(r"has no checkpoint.npz: nothing to resume or evaluate", evaluate.main, [str(out), "--data-dir", str(cifar_dir)])
    # the data the run trained on is gone: named, no download into the default folder
    out = copy("data_gone")
    config = json.loads((out / "config.json").read_text())
    checkpoint_arrays, meta = checkpoint.load(str(out / "checkpoint.npz"))
    moved = {**config, "data_dir": str(tmp_path / "gone")}
    (out / "config.json").write_text(json.dumps(moved))
    checkpoint.save(str(out / "checkpoint.npz"), checkpoint_arrays, {**meta, "config": moved})
    monkeypatch.delenv("TINYRES_DATA", raising=False)
    user_error(r"trained on the CIFAR-10 in .*gone, which is no longer there; give its new place with --data-dir",
               evaluate.main, [str(out)])
    # the last row cut off by a crash: the exporter says how to write it back (a run on all the data)
    out = tmp_path / "cut"
    assert train.main(["--depth", "8", "--batch-size", "8", "--iterations", "2", "--eval-every", "1", "--no-progress",
                       "--data-dir", str(cifar_dir), "--out", str(out)]) == 0
    text = (out / "metrics.csv").read_text()
    (out / "metrics.csv").write_text(text[: text.rstrip("\n").rfind("\n") + 1] + text.rstrip("\n").rsplit("\n", 1)[1][:5])
    with pytest.raises(ValueError, match=r"finished .* but its metrics.csv lacks the last rows.*--resume writes them back"):
        pretrained.export(str(out), str(tmp_path / "weights"))
    (out / "metrics.csv").write_text(text)
    with pytest.raises(FileExistsError, match=r"--folder .* is a file, not a folder"):
        pretrained.export(str(out), str(out / "config.json"))


def test_a_bare_npy_array_under_a_checkpoints_name_is_a_named_error(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    for load in (checkpoint.load, checkpoint.load_weights):
        with pytest.raises(ValueError, match=r"is damaged or is not .*\(it holds one bare array, as np\.save writes"):
            load(path)


def test_a_row_is_written_only_after_its_checkpoint(cifar_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    original = runs.RunDir.append_metrics

    def check_then_append(self, row):
        assert iteration_of(out) == row["iteration"]  # the checkpoint covers the row already
        original(self, row)

    monkeypatch.setattr(runs.RunDir, "append_metrics", check_then_append)
    assert run(cifar_dir, out, "--iterations", "4", "--eval-every", "2") == 0
    assert logged_iterations(out) == ["2", "4"]


def test_checkpoints_are_also_written_between_evaluations(cifar_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    saved = []
    original = train.Trainer.save

    def record(self):
        original(self)
        saved.append(self.iteration)

    monkeypatch.setattr(train.Trainer, "save", record)
    assert run(cifar_dir, out, "--iterations", "4", "--eval-every", "4", "--checkpoint-minutes", "1e-9") == 0
    assert saved == [0, 1, 2, 3, 4]
    saved.clear()
    assert run(cifar_dir, tmp_path / "other", "--iterations", "4", "--eval-every", "4") == 0
    assert saved == [0, 4]  # the default interval (10 minutes) is longer than this run


# ----- 4. no stuck directory ------------------------------------------------------------------

def test_a_run_killed_before_its_first_evaluation_can_be_resumed(cifar_dir, tmp_path):
    out = tmp_path / "run"
    first = trainer_process(cifar_dir, out, "--iterations", "100000", "--eval-every", "100000")
    wait_for(lambda: (out / "checkpoint.npz").exists())
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert resume(out, "--iterations", "2") == 0
    assert logged_iterations(out) == ["2"]


def test_the_same_experiment_can_start_again_where_its_checkpoint_was_lost(cifar_dir, tmp_path):
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "2") == 0
    old_rows = (out / "metrics.csv").read_text()
    os.remove(out / "checkpoint.npz")
    assert run(cifar_dir, out, "--iterations", "2") == 0
    assert (out / "metrics.csv.orphaned").read_text() == old_rows  # kept, not overwritten
    assert logged_iterations(out) == ["2"]
    second_rows = (out / "metrics.csv").read_text()
    os.remove(out / "checkpoint.npz")  # lost again: the first orphaned log stays, the second is kept beside it
    assert run(cifar_dir, out, "--iterations", "2") == 0
    assert (out / "metrics.csv.orphaned").read_text() == old_rows
    assert (out / "metrics.csv.orphaned.1").read_text() == second_rows
    os.remove(out / "checkpoint.npz")  # another experiment is still refused
    user_error("holds metrics.csv from another run", run, cifar_dir, out, "--iterations", "2", "--seed", "3")


# ----- 5. ordinary errors are messages --------------------------------------------------------

def test_a_full_disk_keeps_the_previous_checkpoint_and_says_how_much_space_is_needed(cifar_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "1") == 0
    before = (out / "checkpoint.npz").read_bytes()

    def full(file, **arrays):
        file.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.np, "savez", full)
    message = user_error(r"the disk is full: writing .*checkpoint.npz needs about \d+\.\d MB, .* MB are free.*--resume",
                         resume, out, "--iterations", "2")
    assert "intact" in message
    assert (out / "checkpoint.npz").read_bytes() == before
    assert not (out / "checkpoint.npz.tmp").exists()


def test_a_bad_out_is_refused_before_the_data_is_read(tmp_path):
    missing_data = str(tmp_path / "no-data-here")
    (tmp_path / "file").write_text("x")
    user_error("--out .*file is a file, not a folder", train.main, SMALL + ["--data-dir", missing_data, "--out", str(tmp_path / "file")])
    user_error("--out must be a folder name \\(not empty\\)", train.main, SMALL + ["--data-dir", missing_data, "--out", ""])
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        user_error("cannot write to", train.main, SMALL + ["--data-dir", missing_data, "--out", str(locked / "run")])


def test_a_failed_start_leaves_no_empty_folder(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(UsageError, match="CIFAR-10 not found"):
        train.main(SMALL + ["--data-dir", str(tmp_path), "--out", str(out), "--iterations", "1"])
    assert not out.exists()


@pytest.mark.parametrize("name", ["metrics.csv", "checkpoint.npz"])
def test_a_folder_where_a_run_keeps_a_file_is_a_named_error(cifar_dir, tmp_path, name):
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "1") == 0
    target = out / name
    os.remove(target)
    target.mkdir()
    user_error(f"{name} is a folder", resume, out, "--iterations", "2")


def test_a_checkpoint_header_of_the_wrong_type_is_a_named_error(cifar_dir, tmp_path):
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "1") == 0
    arrays, meta = checkpoint.load(str(out / "checkpoint.npz"))
    checkpoint.save(str(out / "checkpoint.npz"), arrays, {**meta, "iteration": "1"})
    user_error("'iteration' entry is missing or invalid", resume, out, "--iterations", "2")
    user_error("'iteration' entry is missing or invalid", evaluate.main, [str(out), "--data-dir", str(cifar_dir)])
    checkpoint.save(str(out / "checkpoint.npz"), {k: v for k, v in arrays.items() if k != "optimizer.velocity.0"}, meta)
    user_error(r"cannot resume: .*checkpoint.npz does not fit ResNet-8 .*velocity.0", resume, out, "--iterations", "2")


def test_ctrl_c_during_start_up_is_a_message_not_a_traceback(cifar_dir, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "cifar10_loaders", interrupted)
    assert run(cifar_dir, tmp_path / "run", "--iterations", "1") == 130
    assert "interrupted before training started" in capsys.readouterr().err


# ----- 6. settings that make no sense ---------------------------------------------------------

@pytest.mark.parametrize("option, value", [
    ("--lr", "nan"), ("--lr", "inf"), ("--lr", "0"), ("--weight-decay", "nan"), ("--weight-decay", "-1"),
    ("--momentum", "nan"), ("--stop-after-minutes", "-1"), ("--stop-after-minutes", "nan"),
    ("--checkpoint-minutes", "0"), ("--depth", "21"), ("--milestones", "0,5"), ("--milestones", "100,"),
])
def test_settings_that_make_no_sense_are_refused_before_anything_is_written(cifar_dir, tmp_path, option, value):
    user_error(f"error: {option}", run, cifar_dir, tmp_path / "run", option, value)
    assert not (tmp_path / "run").exists()


def test_a_one_iteration_run_trains_at_the_full_learning_rate(cifar_dir, tmp_path):
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "1") == 0
    assert json.loads((out / "config.json").read_text())["milestones"] == "1,1"
    assert float(runs.RunDir(str(out)).metrics()[0]["lr"]) == pytest.approx(0.1)


def test_resume_cannot_end_a_run_before_where_it_is(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "6", "--eval-every", "2") == 0
    config, checkpoint = (out / "config.json").read_text(), (out / "checkpoint.npz").read_bytes()
    user_error("is at iteration 6 already; --iterations 2 would end it in the past", resume, out, "--iterations", "2")
    # in epochs the length is known only once the data is loaded; the run's record must stay as it was
    user_error(r"is at iteration 6 already; --epochs 0.1 \(1 iterations\) would end it in the past", resume, out, "--epochs", "0.1")
    assert (out / "config.json").read_text() == config and (out / "checkpoint.npz").read_bytes() == checkpoint
    assert resume(out) == 0 and "complete at iteration 6; nothing to do" in capsys.readouterr().out
    # resuming a finished run with a setting changed (a session's time limit) leaves its record alone
    assert resume(out, "--stop-after-minutes", "30") == 0 and "nothing to do" in capsys.readouterr().out
    assert (out / "config.json").read_text() == config and (out / "checkpoint.npz").read_bytes() == checkpoint


# ----- 7. data -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["data_batch_1.bin", "test_batch.bin"])
def test_an_all_zero_data_file_is_refused(cifar_dir, tmp_path, name):
    path = cifar_dir / "cifar-10-batches-bin" / name
    path.write_bytes(bytes(path.stat().st_size))
    user_error(f"{name}: all 24 images have label 0; the file is damaged", run, cifar_dir, tmp_path / "run", "--iterations", "1")


def test_the_data_folder_is_recorded_absolute_and_evaluate_prefers_tinyres_data(cifar_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run(os.path.relpath(cifar_dir, tmp_path), "run", "--iterations", "1") == 0
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["data_dir"]
    assert os.path.isabs(recorded) and os.path.samefile(recorded, cifar_dir)
    moved = tmp_path / "moved"
    shutil.move(str(cifar_dir / "cifar-10-batches-bin"), str(moved))
    monkeypatch.setenv("TINYRES_DATA", str(moved))
    assert evaluate.main(["run"]) == 0  # the recorded folder is gone: $TINYRES_DATA is used
    assert "test error" in capsys.readouterr().out


# ----- 8. polish -------------------------------------------------------------------------------

def test_ctrl_c_during_an_evaluation_prints_how_to_resume(cifar_dir, tmp_path, monkeypatch, capsys):
    original = train.Trainer.record_evaluation

    def interrupted_evaluation(self):
        os.kill(os.getpid(), signal.SIGINT)
        return original(self)

    monkeypatch.setattr(train.Trainer, "record_evaluation", interrupted_evaluation)
    assert run(cifar_dir, tmp_path / "run", "--iterations", "4", "--eval-every", "2") == 130
    assert "--resume" in capsys.readouterr().out.splitlines()[-1]
    assert run(cifar_dir, tmp_path / "last", "--iterations", "2", "--eval-every", "2") == 0  # the last one: finished
    assert "done: best test error" in capsys.readouterr().out


def test_the_divergence_message_names_the_last_checkpoint_and_a_remedy_that_applies(cifar_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train, "cross_entropy", lambda logits, labels: (logits * float("nan")).sum())
    assert run(cifar_dir, tmp_path / "run", "--iterations", "2", "--warmup") == 1
    err = capsys.readouterr().err
    assert "last good checkpoint is" in err and "(iteration 0)" in err and "if one was written" not in err
    assert "try a lower --lr." in err and "--warmup" not in err.split("try")[-1]


def test_conv2d_on_numpy_arrays_says_to_wrap_them():
    import tinyres.nn.functional as F

    with pytest.raises(TypeError, match="conv2d: expected tinyres Tensors, got a numpy.ndarray.*tinyres.Tensor"):
        F.conv2d(np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 3, 3)))


# ----- the fuzz test --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 2-iteration run (and its data), made once for the fuzz test."""
    from tinyres.data import cifar10

    data = tmp_path_factory.mktemp("fuzz")
    (data / cifar10.FOLDER).mkdir()
    rng = np.random.default_rng(0)
    for name in cifar10.TRAIN_FILES + cifar10.TEST_FILES:
        cifar10.write_batch(str(data / cifar10.FOLDER / name), rng.integers(0, 256, (24, 3, 32, 32), dtype=np.uint8), np.arange(24) % 10)
    assert run(data, data / "run", "--iterations", "2", "--eval-every", "1") == 0
    return data, data / "run"


JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 100), st.floats(allow_nan=True), st.text(max_size=4),
                        st.lists(st.integers(), max_size=2))
DAMAGE = st.one_of(
    st.tuples(st.just("truncate"), st.sampled_from(["checkpoint.npz", "config.json", "metrics.csv"]), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.sampled_from(["checkpoint.npz", "config.json", "metrics.csv"]), st.floats(0, 1)),
    st.tuples(st.just("retype config"), st.sampled_from(sorted(runs.SCHEMA)), JSON_VALUES),
    st.tuples(st.just("retype header"), st.sampled_from(sorted(runs.META_SCHEMA) + ["row"]), JSON_VALUES),
    st.tuples(st.just("retype metrics"), st.sampled_from(["iteration", "test_error", "lr"]), st.text(max_size=3)),
)


def damage(out, kind, target, how):
    if kind in ("truncate", "flip"):
        data = bytearray((out / target).read_bytes())
        at = min(int(how * len(data)), len(data) - 1)
        if kind == "truncate":
            del data[at:]
        else:
            data[at] ^= 1 << (at % 8)
        (out / target).write_bytes(bytes(data))
        return target
    if kind == "retype config":
        config = json.loads((out / "config.json").read_text())
        (out / "config.json").write_text(json.dumps({**config, target: how}))
        return "config.json"
    if kind == "retype header":
        arrays, meta = checkpoint.load(str(out / "checkpoint.npz"))
        checkpoint.save(str(out / "checkpoint.npz"), arrays, {**meta, target: how})
        return "checkpoint.npz"
    lines = (out / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[-1].split(",")
    cells[header.index(target)] = how.replace(",", "").replace("\n", "")
    (out / "metrics.csv").write_text("\n".join(lines[:-1] + [",".join(cells)]) + "\n")
    return "metrics.csv"


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(DAMAGE)
def test_damaged_run_files_give_a_named_error_or_a_correct_result_never_a_traceback(finished_run, tmp_path_factory, monkeypatch, change):
    data, template = finished_run
    out = tmp_path_factory.mktemp("damaged") / "run"
    shutil.copytree(template, out)
    damage(out, *change)

    def never(*args, **kwargs):
        raise AssertionError("a run file was unpickled")

    monkeypatch.setattr(pickle, "load", never)
    monkeypatch.setattr(pickle, "loads", never)
    checkpoint_before = (out / "checkpoint.npz").read_bytes()
    try:  # report reads config.json and metrics.csv as they are, with no repair, and no checkpoint
        assert report.main([str(out)]) == 0
    except UsageError as error:
        assert str(error).startswith("error: ") and len(str(error)) > 20
    for call in (lambda: evaluate.main([str(out), "--data-dir", str(data)]),
                 lambda: train.main(["--out", str(out), "--resume", "--iterations", "3", "--no-progress", "--data-dir", str(data)])):
        try:
            status = call()
        except UsageError as error:  # a named error: nothing written
            assert str(error).startswith("error: ") and len(str(error)) > 20
            assert (out / "checkpoint.npz").read_bytes() == checkpoint_before
            continue
        assert status == 0  # a correct result: a good checkpoint at the run's end or where it was
        arrays, meta = checkpoint.load(str(out / "checkpoint.npz"))
        assert meta["iteration"] in (2, 3) and all(np.all(np.isfinite(a)) for a in arrays.values())
        checkpoint_before = (out / "checkpoint.npz").read_bytes()


def test_the_committed_runs_written_by_older_versions_still_load():
    found = sorted(d for d in os.listdir(os.path.join(ROOT, "results")) if os.path.isfile(os.path.join(ROOT, "results", d, "config.json")))
    assert found, "results/ holds no run"
    for name in found:
        path = os.path.join(ROOT, "results", name)
        run = runs.load(path)
        assert run.header  # where, when and how it ran
        if os.path.exists(os.path.join(path, "checkpoint.npz")):
            model, config, meta, mean = evaluate.load_run(path)
            assert runs.run_name(config) == run.name and mean.shape == (3, 32, 32)
