"""python -m tinyres.train and tinyres.evaluate end to end, on a small CIFAR-10 the tests write:
the schedule, logs, checkpoints, exact resume, Ctrl-C, and a diverging loss."""

import csv
import json
import os
import signal

import numpy as np
import pytest

from tinyres import checkpoint, evaluate, train

SMALL = ["--depth", "8", "--subset", "48", "--batch-size", "8", "--no-progress"]  # 6 batches per epoch


def run(cifar_dir, out, *extra):
    return train.main(SMALL + ["--data-dir", str(cifar_dir), "--out", str(out), *extra])


def rows(out):
    with open(os.path.join(out, "metrics.csv"), newline="") as f:
        return list(csv.DictReader(f))


def test_the_trainer_warms_up_until_the_training_error_is_below_80_percent(cifar_dir, tmp_path, capsys):
    # the random pixels of the test data keep the error near 90%: the warm-up never ends
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "6", "--eval-every", "3", "--warmup") == 0
    assert [float(r["lr"]) for r in rows(out)] == [pytest.approx(0.01), pytest.approx(0.0001)]
    arrays, meta = checkpoint.load(str(out / "checkpoint.npz"))
    assert meta["warming_up"] is True and len(meta["recent_errors"]) == 6


def test_defaults_are_the_papers_recipe():
    from tinyres import runs

    config, _ = train.resolve_config(train.parse_args(["--out", "/nonexistent/run"]), runs.RunDir("/nonexistent/run"))
    assert (config["batch_size"], config["lr"], config["momentum"], config["weight_decay"]) == (128, 0.1, 0.9, 1e-4)
    assert config["iterations"] is None and config["milestones"] is None  # resolved to 64k and 32k,48k


def test_a_short_run_writes_config_metrics_checkpoint_and_a_final_line(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "6", "--eval-every", "3") == 0
    config = json.loads((out / "config.json").read_text())
    assert config["iterations"] == 6 and config["milestones"] == "3,4" and config["warmup"] is False
    logged = rows(out)
    assert [r["iteration"] for r in logged] == ["3", "6"]
    assert set(logged[0]) >= {"epoch", "lr", "train_loss", "train_error", "test_loss", "test_error", "train_seconds", "wall_seconds", "images_per_sec"}
    assert float(logged[0]["lr"]) == pytest.approx(0.1)  # the lr of the last step logged (step 2 of 0-5)
    assert float(logged[1]["lr"]) == pytest.approx(0.001)
    arrays, meta = checkpoint.load(str(out / "checkpoint.npz"))
    assert meta["iteration"] == 6 and "model.fc.weight" in arrays and "data.mean" in arrays
    assert "done: best test error" in capsys.readouterr().out


def test_epochs_set_the_length_and_move_the_milestones(cifar_dir, tmp_path):
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--epochs", "2", "--eval-every", "6") == 0
    config = json.loads((out / "config.json").read_text())
    assert config["iterations"] == 12 and config["milestones"] == "6,9"
    assert len(rows(out)) == 2


def test_validation_split_is_evaluated_and_logged(cifar_dir, tmp_path):
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "2", "--validation", "20") == 0
    assert "val_error" in rows(out)[0]


def test_resume_reaches_bit_identical_weights(cifar_dir, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run(cifar_dir, straight, "--iterations", "8", "--eval-every", "4") == 0
    # stop after the first iteration (between evaluations), then continue, twice over
    assert run(cifar_dir, resumed, "--iterations", "8", "--eval-every", "4", "--stop-after-minutes", "0") == 0
    assert checkpoint.load(str(resumed / "checkpoint.npz"))[1]["iteration"] == 1
    assert train.main(["--out", str(resumed), "--resume", "--stop-after-minutes", "0", "--no-progress"]) == 0
    assert train.main(["--out", str(resumed), "--resume", "--no-progress"]) == 0
    a, meta_a = checkpoint.load(str(straight / "checkpoint.npz"))
    b, meta_b = checkpoint.load(str(resumed / "checkpoint.npz"))
    assert meta_a["iteration"] == meta_b["iteration"] == 8
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert [r["test_error"] for r in rows(straight)] == [r["test_error"] for r in rows(resumed)]


def test_ctrl_c_saves_a_checkpoint_and_the_run_can_resume(cifar_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    original_step = train.Trainer.step

    def step_then_interrupt(self, images, labels):
        result = original_step(self, images, labels)
        if self.iteration == 2:  # the third step: press Ctrl-C in the middle of training
            os.kill(os.getpid(), signal.SIGINT)
        return result

    monkeypatch.setattr(train.Trainer, "step", step_then_interrupt)
    assert run(cifar_dir, out, "--iterations", "6", "--eval-every", "6") == 130
    assert checkpoint.load(str(out / "checkpoint.npz"))[1]["iteration"] == 3
    monkeypatch.setattr(train.Trainer, "step", original_step)
    assert train.main(["--out", str(out), "--resume", "--no-progress"]) == 0
    assert checkpoint.load(str(out / "checkpoint.npz"))[1]["iteration"] == 6


def test_a_second_ctrl_c_aborts_without_saving_and_says_where_resume_continues(cifar_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    original_step = train.Trainer.step

    def step_then_interrupt_twice(self, images, labels):
        result = original_step(self, images, labels)
        if self.iteration == 3:  # Ctrl-C twice in the 4th step: the second one aborts it
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return result

    monkeypatch.setattr(train.Trainer, "step", step_then_interrupt_twice)
    assert run(cifar_dir, out, "--iterations", "8", "--eval-every", "2") == 130
    err = capsys.readouterr().err
    # the evaluation at iteration 2 saved the last checkpoint; the abort in the 4th step saved nothing
    assert "aborted after iteration 3 without saving; --resume continues from its checkpoint at iteration 2" in err
    assert "before training started" not in err
    assert checkpoint.load(str(out / "checkpoint.npz"))[1]["iteration"] == 2


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(cifar_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    calls = {"n": 0}
    real_cross_entropy = train.cross_entropy

    def poisoned(logits, labels):  # the 4th training loss is NaN
        loss = real_cross_entropy(logits, labels)
        if logits.requires_grad:
            calls["n"] += 1
            if calls["n"] == 4:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(train, "cross_entropy", poisoned)
    assert run(cifar_dir, out, "--iterations", "6", "--eval-every", "2") == 1
    assert "the loss became nan at iteration 3: training diverged" in capsys.readouterr().err
    arrays, meta = checkpoint.load(str(out / "checkpoint.npz"))
    assert meta["iteration"] == 2 and all(np.all(np.isfinite(v)) for v in arrays.values())


def test_an_existing_run_is_not_overwritten(cifar_dir, tmp_path):
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "1") == 0
    with pytest.raises(SystemExit, match="already holds a run.*--resume"):
        run(cifar_dir, out, "--iterations", "1")


def test_resume_refuses_to_change_the_experiment(cifar_dir, tmp_path):
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "1") == 0
    with pytest.raises(SystemExit, match=r"--depth 20 \(run has 8\)"):
        train.main(["--out", str(out), "--resume", "--depth", "20"])
    with pytest.raises(SystemExit, match="nothing to resume"):
        train.main(["--out", str(tmp_path / "none"), "--resume"])


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("tinyres.data.cifar10.urllib.request.urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(SystemExit, match="CIFAR-10 not found in .*empty.*--data-dir"):
        train.main(SMALL + ["--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "run"), "--iterations", "1"])


def test_evaluate_reports_the_test_error_of_a_run(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "3") == 0
    logged = float(rows(out)[-1]["test_error"])
    assert evaluate.main([str(out), "--data-dir", str(cifar_dir)]) == 0
    printed = capsys.readouterr().out
    assert f"test error {logged:.2%}" in printed and "at iteration 3" in printed


def test_runs_load_reads_what_a_run_wrote(cifar_dir, tmp_path):
    from tinyres import runs

    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "4", "--eval-every", "2", "--test-subset", "10") == 0
    loaded = runs.load(str(out))
    assert loaded.name == "ResNet-8" and loaded.complete and loaded.iterations_done == 4
    np.testing.assert_array_equal(loaded.metrics["iteration"], [2, 4])
    assert np.all((loaded.metrics["test_error"] * 10) % 1 < 1e-9)  # errors over 10 test images


def test_runs_load_a_run_with_no_evaluation_yet(cifar_dir, tmp_path):
    from tinyres import runs

    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "4", "--eval-every", "4", "--stop-after-minutes", "0") == 0
    assert not (out / "metrics.csv").exists()
    loaded = runs.load(str(out))
    assert loaded.iterations_done == 0 and not loaded.complete


def test_float64_runs_train_in_float64(cifar_dir, tmp_path):
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "2", "--dtype", "float64") == 0
    arrays, _ = checkpoint.load(str(out / "checkpoint.npz"))
    assert arrays["model.conv1.weight"].dtype == np.float64


def test_a_run_given_in_epochs_resumes_without_repeating_its_length(cifar_dir, tmp_path):
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--epochs", "2", "--stop-after-minutes", "0") == 0
    assert train.main(["--out", str(out), "--resume", "--no-progress"]) == 0
    assert checkpoint.load(str(out / "checkpoint.npz"))[1]["iteration"] == 12


def test_a_new_length_on_resume_moves_the_default_milestones(cifar_dir, tmp_path):
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "6", "--stop-after-minutes", "0") == 0
    assert train.main(["--out", str(out), "--resume", "--iterations", "12", "--stop-after-minutes", "0", "--no-progress"]) == 0
    assert json.loads((out / "config.json").read_text())["milestones"] == "6,9"
    assert train.main(["--out", str(out), "--resume", "--milestones", "8,10", "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["iterations"], config["milestones"]) == (12, "8,10")
    assert float(rows(out)[-1]["lr"]) == pytest.approx(0.001)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_weights_that_become_infinite_are_never_checkpointed(cifar_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    original_step = train.Trainer.step

    def step_then_blow_up(self, images, labels):
        result = original_step(self, images, labels)
        if self.iteration == 2:  # the third step leaves an infinite weight behind
            self.model.fc.weight.data[0, 0] = np.inf
        return result

    monkeypatch.setattr(train.Trainer, "step", step_then_blow_up)
    assert run(cifar_dir, out, "--iterations", "6", "--eval-every", "2") == 1
    assert "training diverged" in capsys.readouterr().err
    arrays, meta = checkpoint.load(str(out / "checkpoint.npz"))
    assert meta["iteration"] == 2 and all(np.all(np.isfinite(v)) for v in arrays.values())
    assert [r["iteration"] for r in rows(out)] == ["2"]


def test_a_fresh_run_refuses_a_folder_with_another_runs_metrics(cifar_dir, tmp_path):
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "1") == 0
    os.remove(out / "checkpoint.npz")
    before = (out / "metrics.csv").read_text()
    with pytest.raises(SystemExit, match="holds metrics.csv from another run.*choose another --out"):
        run(cifar_dir, out, "--iterations", "1", "--depth", "14")
    assert (out / "metrics.csv").read_text() == before


@pytest.mark.parametrize("option, value", [
    ("--epochs", "0"), ("--epochs", "-3"), ("--iterations", "0"), ("--eval-every", "0"),
    ("--milestones", "abc"), ("--milestones", "3,-1"), ("--seed", "-1"),
])
def test_settings_that_cannot_make_a_run_name_their_option(cifar_dir, tmp_path, option, value):
    with pytest.raises(SystemExit, match=f"error: {option}"):
        run(cifar_dir, tmp_path / "run", option, value)
    assert not (tmp_path / "run").exists()


def test_a_damaged_or_foreign_checkpoint_is_a_clear_error_and_stays(cifar_dir, tmp_path):
    out, other = tmp_path / "run", tmp_path / "other"
    assert run(cifar_dir, out, "--iterations", "1") == 0
    assert train.main(["--depth", "14", "--subset", "48", "--batch-size", "8", "--no-progress", "--data-dir",
                       str(cifar_dir), "--out", str(other), "--iterations", "1"]) == 0
    good = (out / "checkpoint.npz").read_bytes()
    (out / "checkpoint.npz").write_bytes(good[: len(good) // 2])
    with pytest.raises(SystemExit, match="checkpoint.npz is damaged or is not a tinyres checkpoint"):
        train.main(["--out", str(out), "--resume", "--iterations", "2"])
    with pytest.raises(SystemExit, match="checkpoint.npz is damaged"):
        evaluate.main([str(out), "--data-dir", str(cifar_dir)])
    (out / "checkpoint.npz").write_bytes((other / "checkpoint.npz").read_bytes())
    with pytest.raises(SystemExit, match=r"disagrees with the checkpoint.*depth \(config.json: 8, checkpoint: 14\).*another run"):
        train.main(["--out", str(out), "--resume", "--iterations", "2"])
    with pytest.raises(SystemExit, match=r"disagrees with the checkpoint.*depth"):
        evaluate.main([str(out), "--data-dir", str(cifar_dir)])
    assert (out / "checkpoint.npz").read_bytes() == (other / "checkpoint.npz").read_bytes()
    (out / "config.json").write_text("{not json")
    with pytest.raises(SystemExit, match="config.json is missing or unreadable.*delete it"):
        train.main(["--out", str(out), "--resume"])


def test_resuming_on_other_images_is_refused(cifar_dir, tmp_path):
    from tinyres.data import cifar10

    out, elsewhere = tmp_path / "run", tmp_path / "elsewhere" / cifar10.FOLDER
    assert run(cifar_dir, out, "--iterations", "1") == 0
    elsewhere.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in cifar10.TRAIN_FILES + cifar10.TEST_FILES:
        cifar10.write_batch(str(elsewhere / name), rng.integers(0, 256, (24, 3, 32, 32), dtype=np.uint8), np.arange(24) % 10)
    with pytest.raises(SystemExit, match="not the ones this run was trained on.*--data-dir the run used"):
        train.main(["--out", str(out), "--resume", "--iterations", "2", "--data-dir", str(elsewhere.parent)])


def test_evaluate_reports_the_validation_split_too(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "2", "--validation", "20") == 0
    logged = rows(out)[-1]
    assert evaluate.main([str(out), "--data-dir", str(cifar_dir)]) == 0
    printed = capsys.readouterr().out
    assert f"validation error {float(logged['val_error']):.2%}" in printed and "on 20 images" in printed
    with pytest.raises(SystemExit, match="--batch-size must be at least 1"):
        evaluate.main([str(out), "--batch-size", "0"])


def test_the_recipe_flags_reach_the_network_and_the_optimizer(cifar_dir, tmp_path, monkeypatch):
    # --lr, --momentum, --weight-decay and --shortcut change the experiment: each must get there
    made = {}
    real_sgd = train.SGD

    def recording_sgd(params, lr, momentum, weight_decay):
        made.update(lr=lr, momentum=momentum, weight_decay=weight_decay)
        return real_sgd(params, lr, momentum, weight_decay)

    monkeypatch.setattr(train, "SGD", recording_sgd)
    out = tmp_path / "run"
    assert run(cifar_dir, out, "--iterations", "2", "--eval-every", "2", "--lr", "0.05", "--momentum", "0.8",
               "--weight-decay", "0.001", "--shortcut", "B", "--milestones", "5") == 0
    assert made == {"lr": 0.05, "momentum": 0.8, "weight_decay": 0.001}
    assert float(rows(out)[0]["lr"]) == pytest.approx(0.05)  # before the first division, the given rate
    arrays, meta = checkpoint.load(str(out / "checkpoint.npz"))
    # option B: a projection (1x1 conv and batch norm) where the shape changes, at each stage's first block
    assert {"model.stage2.0.shortcut.0.weight", "model.stage3.0.shortcut.1.running_var"} <= set(arrays)
    assert not any(k.startswith("model.stage1.0.shortcut") for k in arrays)  # no projection where the shape stays
    assert meta["config"]["shortcut"] == "B" and meta["config"]["lr"] == 0.05
