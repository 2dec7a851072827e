"""tinyres.plot: Figure 6 from logged runs, Figure 7's layer responses, the command line; and
tinyres.runs' helpers for notebooks."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinyres
import tinyres.nn.functional as F
from tinyres import plot, runs, train
from tinyres.models import cifar_resnet, imagenet_resnet

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def write_run(path, depth, plain, rows, iterations=1000, milestones="500,750"):
    """A run directory with config.json and a metrics.csv of (iteration, train_error, test_error) rows."""
    os.makedirs(path)
    from tinyres import train

    config = {**train.DEFAULTS, "depth": depth, "plain": plain, "iterations": iterations, "milestones": milestones,
              "eval_every": 100, "out": str(path), "warmup": False}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    if rows:
        lines = ["iteration,lr,train_loss,train_error,test_error,train_seconds"] + [
            f"{i},0.1,2.0,{tr},{te},{i / 2}" for i, tr, te in rows]
        with open(os.path.join(path, "metrics.csv"), "w") as f:
            f.write("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def four_runs(tmp_path):
    """plain-20, plain-56, ResNet-20 and ResNet-56, four evaluations each (ResNet-56 unfinished)."""
    rng = np.random.default_rng(0)

    def rows(n):
        return [(100 * (k + 1), *np.round(rng.uniform(0.1, 0.9, 2), 4)) for k in range(n)]

    return {
        "plain20": write_run(tmp_path / "plain20", 20, True, rows(10)),
        "plain56": write_run(tmp_path / "plain56", 56, True, rows(10)),
        "resnet20": write_run(tmp_path / "resnet20", 20, False, rows(10)),
        "resnet56": write_run(tmp_path / "resnet56", 56, False, rows(4)),
    }


def lines_by_style(ax):
    return ([line for line in ax.lines if line.get_linestyle() == "--"],
            [line for line in ax.lines if line.get_linestyle() == "-"])


# ----- Figure 6 -------------------------------------------------------------------------------
def test_importing_tinyres_and_its_plot_module_does_not_import_matplotlib():
    code = "import sys, tinyres, tinyres.plot, tinyres.runs; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_figure6_puts_plain_nets_left_and_resnets_right_two_lines_each(four_runs):
    fig = plot.figure6(four_runs.values())
    left, right = fig.axes
    assert "plain" in left.get_title() and "residual" in right.get_title()
    for ax, names in ((left, ["plain-20", "plain-56"]), (right, ["ResNet-20", "ResNet-56 (400 of 1000 it)"])):
        train_lines, test_lines = lines_by_style(ax)
        assert len(ax.lines) == 4 and len(train_lines) == len(test_lines) == 2
        assert [line.get_label() for line in test_lines] == names
        legend = [text.get_text() for text in ax.get_legend().get_texts()]
        assert legend == names + ["training error", "test error"]


def test_figure6_lines_are_the_logged_errors_in_percent(four_runs):
    fig = plot.figure6([four_runs["plain20"], four_runs["resnet56"]])
    for ax, path in zip(fig.axes, (four_runs["plain20"], four_runs["resnet56"])):
        m = runs.load(path).metrics
        (train_line,), (test_line,) = lines_by_style(ax)
        np.testing.assert_array_equal(test_line.get_xdata(), m["iteration"])
        np.testing.assert_allclose(test_line.get_ydata(), 100 * m["test_error"])
        # the training error of a row is the mean since the previous row: drawn mid-interval
        np.testing.assert_array_equal(train_line.get_xdata(), m["iteration"] - 50)
        np.testing.assert_allclose(train_line.get_ydata(), 100 * m["train_error"])


def test_training_error_sits_in_the_middle_of_the_interval_it_averages():
    np.testing.assert_array_equal(plot.training_error_iterations([100, 200, 400, 450]), [50, 150, 300, 425])


def test_one_colour_per_depth_the_same_in_both_panels(four_runs):
    left, right = plot.figure6(four_runs.values()).axes
    colours = [{line.get_label(): line.get_color() for line in lines_by_style(ax)[1]} for ax in (left, right)]
    assert colours[0]["plain-20"] == colours[1]["ResNet-20"]
    assert colours[0]["plain-56"] == colours[1]["ResNet-56 (400 of 1000 it)"]
    assert colours[0]["plain-20"] != colours[0]["plain-56"]
    for ax in (left, right):  # a run's training and test lines share its colour
        train_lines, test_lines = lines_by_style(ax)
        assert [line.get_color() for line in train_lines] == [line.get_color() for line in test_lines]


def test_two_runs_of_the_same_network_are_told_apart_by_their_directories(tmp_path):
    seeds = [write_run(tmp_path / f"seed{k}", 20, False, [(100, 0.5, 0.5)], iterations=100) for k in (0, 1)]
    (ax,) = plot.figure6(seeds).axes
    assert [line.get_label() for line in lines_by_style(ax)[1]] == ["ResNet-20 [seed0]", "ResNet-20 [seed1]"]


def test_figure6_takes_run_objects_as_well_as_directories(four_runs):
    from_dirs = plot.figure6([four_runs["plain20"]]).axes[0].lines
    from_runs = plot.figure6([runs.load(four_runs["plain20"])]).axes[0].lines
    for a, b in zip(from_dirs, from_runs):
        np.testing.assert_array_equal(a.get_xydata(), b.get_xydata())


def test_figure6_marks_the_learning_rate_divisions_and_shows_long_runs_in_units_of_1e4(tmp_path):
    path = write_run(tmp_path / "long", 110, False, [(32_000, 0.1, 0.12), (64_000, 0.01, 0.07)], 64_000, "32000,48000")
    ax = plot.figure6([path], ymax=20).axes[0]
    assert [segment[0, 0] for segment in ax.collections[0].get_segments()] == [32_000, 48_000]
    assert ax.xaxis.get_major_formatter()(30_000, 0) == "3" and "1e4" in ax.get_xlabel()
    assert ax.get_ylim() == (0, 20)


def test_figure6_names_a_missing_directory_and_a_run_with_no_evaluation(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere does not exist: give a run directory"):
        plot.figure6([str(tmp_path / "nowhere")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty has no config.json"):
        plot.figure6([str(tmp_path / "empty")])
    started = write_run(tmp_path / "started", 20, False, rows=[])
    with pytest.raises(ValueError, match="started has no evaluation logged yet.*after 100 iterations"):
        plot.figure6([started])
    with pytest.raises(ValueError, match="figure6: no runs given"):
        plot.figure6([])


# ----- Figure 7 -------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [8, 20, 56])
@pytest.mark.parametrize("plain", [False, True])
def test_response_layers_are_the_6n_plus_1_3x3_convolutions_in_order(depth, plain):
    names = [name for name, _ in plot.response_layers(cifar_resnet(depth, plain))]
    n = (depth - 2) // 6
    assert len(names) == 6 * n + 1
    assert names[:3] == ["bn1", "stage1.0.bn1", "stage1.0.bn2"] and names[-1] == f"stage3.{n - 1}.bn2"


def test_response_layers_of_bottleneck_nets_are_their_3x3_middle_layers():
    names = [name for name, _ in plot.response_layers(imagenet_resnet(50))]
    assert len(names) == 16 and all(name.endswith(".bn2") for name in names)  # the 7x7 stem is not 3x3


def randomised(model, seed=0):
    """``model`` in float64 with batch-norm statistics and parameters far from their initial values."""
    rng = np.random.default_rng(seed)
    model.astype("float64")
    for _, bn in plot.response_layers(model):
        c = bn.num_features
        bn.running_mean[...], bn.running_var[...] = rng.normal(0, 0.5, c), rng.uniform(0.2, 3, c)
        bn.weight.data[...], bn.bias.data[...] = rng.uniform(0.2, 2, c), rng.normal(0, 0.5, c)
    return model


def explicit_responses(net, x):
    """Every 3x3 layer's response by writing the CIFAR network's forward pass out by hand."""
    responses = [net.bn1(net.conv1(x))]
    h = F.relu(responses[-1])
    for stage in (net.stage1, net.stage2, net.stage3):
        for block in stage:
            responses.append(block.bn1(block.conv1(h)))
            responses.append(block.bn2(block.conv2(F.relu(responses[-1]))))
            h = F.relu(responses[-1] + block.shortcut(h)) if block.shortcut is not None else F.relu(responses[-1])
    return np.array([np.std(r.data) for r in responses])


@pytest.mark.parametrize("plain", [False, True])
def test_layer_responses_equal_the_std_of_each_layer_computed_by_hand(plain):
    tinyres.manual_seed(0)
    net = randomised(cifar_resnet(14, plain)).eval()
    images = np.random.default_rng(1).normal(size=(5, 3, 32, 32))
    with tinyres.no_grad():
        expected = explicit_responses(net, tinyres.Tensor(images, dtype="float64"))
    measured = plot.layer_responses(net, images, batch_size=2)  # batches of 2, 2 and 1, pooled
    assert measured.shape == (13,)
    np.testing.assert_allclose(measured, expected, rtol=1e-10)
    assert np.ptp(measured) > 0.1  # the randomised statistics make the layers differ


def test_layer_responses_give_19_values_for_20_layers_and_leave_the_model_as_it_was():
    tinyres.manual_seed(0)
    net = cifar_resnet(20).train()
    images = tinyres.Tensor(np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32))
    with tinyres.no_grad():
        before = net.eval()(images).data.copy()
    net.train()
    assert len(plot.layer_responses(net, images)) == 19
    assert all(m.training for m in net.modules())
    assert not any("forward" in vars(m) for m in net.modules())
    with tinyres.no_grad():
        np.testing.assert_array_equal(net.eval()(images).data, before)


def test_in_training_mode_an_untrained_net_responds_with_std_1_everywhere():
    tinyres.manual_seed(0)  # gamma 1, beta 0: batch norm standardises each channel of the batch
    images = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(plot.layer_responses(cifar_resnet(8), images, training=True), 1, atol=1e-3)


def test_layer_responses_refuse_images_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"layer_responses: images must be \(N, channels, height, width\).*\(3, 32, 32\)"):
        plot.layer_responses(cifar_resnet(8), np.zeros((3, 32, 32), np.float32))


def test_figure7_draws_layer_order_above_and_sorted_below_one_colour_per_network_on_a_log_axis():
    responses = {"plain-20": np.linspace(1, 2, 19)[::-1] ** 2, "ResNet-20": np.linspace(0.5, 1, 19), "plain-56": np.geomspace(20, 1, 55)}
    by_layer, by_size = plot.figure7(responses).axes
    for ax in (by_layer, by_size):
        assert ax.get_yscale() == "log"
        assert [line.get_label() for line in ax.lines] == list(responses)
        assert len({line.get_color() for line in ax.lines}) == 3
    for line, stds in zip(by_layer.lines, responses.values()):
        np.testing.assert_array_equal(line.get_xdata(), np.arange(1, len(stds) + 1))
        np.testing.assert_array_equal(line.get_ydata(), stds)
    for line, stds in zip(by_size.lines, responses.values()):
        np.testing.assert_array_equal(line.get_ydata(), sorted(stds, reverse=True))


# ----- the command line -----------------------------------------------------------------------
def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_cli_figure6_writes_a_png(four_runs, tmp_path, capsys):
    out = tmp_path / "figure6.png"
    assert plot.main(["figure6", *four_runs.values(), "-o", str(out)]) == 0
    assert is_png(out) and f"wrote {out}" in capsys.readouterr().out


def test_cli_figure7_measures_a_trained_checkpoint_and_writes_a_png(cifar_dir, tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    train.main(["--depth", "8", "--subset", "48", "--batch-size", "8", "--iterations", "2", "--no-progress",
                "--data-dir", str(cifar_dir), "--out", run_dir])
    capsys.readouterr()
    out = tmp_path / "figure7.png"
    assert plot.main(["figure7", run_dir, "--data-dir", str(cifar_dir), "--images", "10", "-o", str(out)]) == 0
    assert is_png(out)
    assert "ResNet-8, 7 layers on 10 test images" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stopped:
        plot.main(["figure7", run_dir, "--data-dir", str(cifar_dir), "--images", "25", "-o", str(out)])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == "error: --images must be between 1 and 24 (the test set's size), got 25\n"


@pytest.mark.parametrize("figure, problem, message", [
    ("figure6", "missing", "does not exist: give a run directory written by python -m tinyres.train"),
    ("figure6", "no metrics", "has no evaluation logged yet"),
    ("figure6", "no output folder", "cannot write .*: the folder .* does not exist"),
    ("figure7", "missing", "does not exist: give a run directory"),
    ("figure7", "no checkpoint", "has no checkpoint.npz yet"),
    ("figure6", "damaged header", "metrics.csv lacks the columns train_error, test_error, train_seconds .*put back the run's own file"),
    ("figure6", "output a folder", r"-o .* is a folder: give the image file to write"),
    ("figure6", "no extension", r"-o .*figure: give a file name ending in an image format"),
])
def test_cli_errors_are_one_line_and_exit_code_2(tmp_path, capsys, figure, problem, message):
    run_dir = write_run(tmp_path / "run", 20, False, [] if problem == "no metrics" else [(100, 0.5, 0.5)])
    if problem == "damaged header":  # the first line of metrics.csv cut short
        metrics = Path(run_dir) / "metrics.csv"
        metrics.write_text("iteration,lr,train_loss\n" + metrics.read_text().split("\n", 1)[1])
    out = tmp_path / ("nowhere" if problem == "no output folder" else "") / "figure.png"
    if problem == "output a folder":
        out = tmp_path / "figures"
        out.mkdir()
    if problem == "no extension":  # matplotlib would write figure.png and we would say "wrote figure"
        out = tmp_path / "figure"
    argv = [figure, str(tmp_path / "missing") if problem == "missing" else run_dir, "-o", str(out)]
    with pytest.raises(SystemExit) as stopped:
        plot.main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert re.search(message, err)
    assert not out.exists() or out.is_dir() and not any(out.iterdir())
    assert not (tmp_path / "figure.png").exists()


def test_cli_error_has_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tinyres.plot", "figure6", str(tmp_path / "missing"), "-o", str(tmp_path / "f.png")],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


# ----- tinyres.runs helpers for notebooks -----------------------------------------------------
def test_load_logged_run_returns_the_run_or_none_and_says_which(four_runs, tmp_path):
    notes = []
    assert runs.load_logged_run(str(tmp_path / "missing"), notes.append) is None
    assert runs.load_logged_run(write_run(tmp_path / "started", 20, False, []), notes.append) is None
    run = runs.load_logged_run(four_runs["resnet56"], notes.append)
    assert run.name == "ResNet-56" and run.iterations_done == 400
    assert "MISSING" in notes[0] and "no evaluation logged yet" in notes[1]
    assert notes[2].endswith("ResNet-56, logged run, INCOMPLETE: 400 of 1000 iterations") and "log header" in notes[3]
