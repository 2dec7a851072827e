"""The paper's Figures 6 and 7, drawn from the run directories ``python -m tinyres.train`` writes.

    python -m tinyres.plot figure6 RUN_DIR... -o figure6.png [--ymax 20]
    python -m tinyres.plot figure7 RUN_DIR... -o figure7.png [--data-dir DIR] [--images N]

Figure 6 (section 4.2): training error (dashed) and test error (solid) on CIFAR-10 against
iterations, plain networks in one panel and ResNets in the other, one colour per depth.

Figure 7: the standard deviation of each 3x3 layer's response, "the outputs of each 3x3 layer,
after BN and before other nonlinearity (ReLU/addition)", in the order of the layers and sorted
by size. The paper does not say over what the standard deviation is taken. Here it is over every
value the layer outputs for the given images (all images, channels and positions), with the
network in evaluation mode, as chapter 8 measures it; the images are the CIFAR-10 test images.
Every 3x3 layer counts, the stem's included: 6n + 1 of them in a CIFAR net of depth 6n + 2.

matplotlib is imported inside the functions that draw: ``import tinyres`` does not need it.
"""

import tinyres  # noqa: I001  (first: it configures OpenBLAS before NumPy starts it)

import os
import sys

import numpy as np

from tinyres import runs as run_files
from tinyres.cli import ArgumentParser, UsageError, reporting_usage_errors
from tinyres.nn.batch_norm import BatchNorm2d
from tinyres.nn.conv import Conv2d
from tinyres.nn.module import observing
from tinyres.tensor import Tensor

# The paper's depths keep their colour in every figure; other depths take the spare ones in turn.
DEPTH_COLORS = {20: "tab:blue", 32: "tab:green", 44: "tab:orange", 56: "tab:red", 110: "tab:purple", 1202: "tab:brown"}
SPARE_COLORS = ("tab:gray", "tab:olive", "tab:cyan", "tab:pink")


def depth_colors(depths):
    """{depth: colour} for the given depths, so that one depth has one colour in every panel."""
    others = sorted(set(depths) - set(DEPTH_COLORS))
    colors = {depth: SPARE_COLORS[k % len(SPARE_COLORS)] for k, depth in enumerate(others)}
    return {**DEPTH_COLORS, **colors}


def _as_run(run):
    """A :class:`tinyres.runs.Run` from a Run or a run directory, with at least one evaluation."""
    return (run if isinstance(run, run_files.Run) else run_files.load(run)).require_metrics()


def _unique_labels(labels, paths):
    """The labels, each followed by its run directory's name where two would read the same."""
    return [f"{label} [{os.path.basename(os.path.normpath(path))}]" if labels.count(label) > 1 else label
            for label, path in zip(labels, paths)]


def training_error_iterations(iterations):
    """Where each row's training error belongs on the iteration axis.

    The trainer logs the mean training error over the batches since the previous evaluation, so
    the row at iteration i describes the interval (previous row's iteration, i]: it is drawn at
    the middle of that interval. The test error is measured at i itself.
    """
    iterations = np.asarray(iterations, dtype=float)
    previous = np.concatenate([[0.0], iterations[:-1]])
    return (previous + iterations) / 2


def error_axis_top(runs):
    """Above the largest error the runs logged, in %: the next multiple of 10 at least 1 higher."""
    largest = max(100 * max(run.metrics["train_error"].max(), run.metrics["test_error"].max()) for run in runs)
    return min(100.0, 10 * np.ceil((largest + 1) / 10))


def plot_error_curves(ax, runs, title=None, colors=None, missing=()):
    """Training error (dashed) and test error (solid), in %, against iterations, into ``ax``.

    ``runs``: run directories or :class:`tinyres.runs.Run` objects, each with at least one
    evaluation logged. ``colors``: {depth: colour} (default :func:`depth_colors`). ``missing``:
    names of runs not logged yet, listed in the legend as such. Dotted vertical lines mark where
    the learning rate was divided, when all runs divided it at the same iterations.
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    runs = [_as_run(run) for run in runs]
    colors = colors or depth_colors(run.config["depth"] for run in runs)
    handles = []
    for run, label in zip(runs, _unique_labels([run.label for run in runs], [run.path for run in runs])):
        m, color = run.metrics, colors[run.config["depth"]]
        ax.plot(training_error_iterations(m["iteration"]), 100 * m["train_error"], "--", color=color, lw=1.2)
        handles.append(ax.plot(m["iteration"], 100 * m["test_error"], "-", color=color, lw=2.2, label=label)[0])
    handles += [Line2D([], [], ls=" ", label=f"{name}: not logged yet") for name in missing]
    handles += [Line2D([], [], color="k", ls="--", lw=1.2, label="training error"),
                Line2D([], [], color="k", ls="-", lw=2.2, label="test error")]

    last = max([run.config["iterations"] for run in runs] + [run.iterations_done for run in runs], default=1)
    top = error_axis_top(runs) if runs else 100
    milestones = {run.config.get("milestones") for run in runs}
    xlabel = "iterations"
    if len(milestones) == 1 and milestones != {None}:
        divisions = run_files.parse_milestones(milestones.pop())
        ax.vlines(divisions, 0, 1, transform=ax.get_xaxis_transform(), color="0.45", ls=":", lw=1, zorder=0)
        xlabel += " (dotted: learning rate divided by 10)"
    if last >= 20_000:  # long runs: the paper's unit, 10^4 iterations
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1e4:g}"))
        xlabel = xlabel.replace("iterations", "iterations (1e4)", 1)
    ax.set(xlim=(0, last), ylim=(0, top), xlabel=xlabel, ylabel="error (%)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=8, loc="best")  # where it covers the fewest points


def figure6(runs, axes=None, ymax=None):
    """The paper's Figure 6 from training runs: plain nets left, ResNets right; returns the Figure.

    ``runs``: run directories or :class:`tinyres.runs.Run` objects, each with at least one
    evaluation logged. A panel is drawn for each kind of network present (plain first), the
    runs in it by depth. ``axes``:
    Axes to draw into, one per panel; by default a new figure. ``ymax``: top of the error axis
    in % (the paper's is 20; by default the largest error shown).
    """
    runs = [_as_run(run) for run in runs]
    if not runs:
        raise ValueError("figure6: no runs given")
    if ymax is not None and ymax <= 0:
        raise ValueError(f"figure6: ymax is the top of the error axis in %, it must be above 0, got {ymax}")
    kinds = [plain for plain in (True, False) if any(run.config["plain"] == plain for run in runs)]
    if axes is None:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 4.8), sharey=True, squeeze=False,
                                 layout="constrained")
        axes = axes[0]
    elif len(axes) != len(kinds):
        raise ValueError(f"figure6: these runs need {len(kinds)} axes (plain, then residual networks), got {len(axes)}")
    colors = depth_colors(run.config["depth"] for run in runs)
    for ax, plain in zip(axes, kinds):
        title = "plain networks" if plain else "residual networks (ResNet)"
        panel = sorted((run for run in runs if run.config["plain"] == plain), key=lambda run: run.config["depth"])
        plot_error_curves(ax, panel, f"CIFAR-10, {title}", colors)
    for ax in axes:
        ax.set_ylim(0, ymax or error_axis_top(runs))
    return axes[0].figure


# ----- Figure 7 -------------------------------------------------------------------------------
def response_layers(model):
    """(name, batch norm) for every 3x3 convolution of ``model``, in the order of the layers.

    The batch norm's output is the layer's response. In tinyres's networks a module's ``convK``
    is followed by its ``bnK`` (the stem's conv1/bn1, a block's conv1/bn1 and conv2/bn2).
    """
    layers = []
    for prefix, module in model.named_modules():
        for name, conv in module.named_children():
            if not (name.startswith("conv") and isinstance(conv, Conv2d) and conv.kernel_size == (3, 3)):
                continue
            bn_name = "bn" + name[len("conv"):]
            bn = getattr(module, bn_name, None)
            if not isinstance(bn, BatchNorm2d):
                raise ValueError(f"response_layers: {prefix or 'the model'}.{name} has no batch norm {bn_name} after it")
            layers.append((f"{prefix}.{bn_name}" if prefix else bn_name, bn))
    if not layers:
        raise ValueError(f"response_layers: {type(model).__name__} has no 3x3 convolution followed by batch norm")
    return layers


def pooled_std(parts):
    """Standard deviation of the union of groups given as (count, mean, variance): the mean
    within-group variance plus the variance of the group means, each weighted by its count."""
    count, mean, variance = (np.array(column, dtype=np.float64) for column in zip(*parts))
    overall = np.sum(count * mean) / count.sum()
    return float(np.sqrt(np.sum(count * (variance + (mean - overall) ** 2)) / count.sum()))


def layer_responses(model, images, batch_size=200, training=False):
    """Standard deviation of every 3x3 layer's response (see :func:`response_layers`) on
    ``images``, in the order of the layers: a float64 array.

    ``images``: (N, 3, H, W), preprocessed as the network was trained (pixels in [0, 1] minus the
    training mean), a Tensor or an array on the model's backend. The network runs in evaluation
    mode, ``batch_size`` images at a time; its modes are restored afterwards. The standard
    deviation is over all values of the response (images, channels and positions), population
    (divided by their number), combined exactly across batches in float64.

    ``training=True`` runs it in training mode instead, where batch norm uses each batch's own
    statistics (and, as in any training-mode pass, updates its running averages): a check of
    the mechanism, since with gamma 1 and beta 0 every response then has a std of almost 1.
    """
    images = images.data if isinstance(images, Tensor) else images
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"layer_responses: images must be (N, channels, height, width) with N >= 1, got shape {tuple(images.shape)}")
    layers = response_layers(model)
    index = {id(bn): k for k, (_, bn) in enumerate(layers)}
    parts = [[] for _ in layers]  # per layer, per batch: (count, mean, variance)

    def note(bn, response):
        values = response.data
        parts[index[id(bn)]].append((values.size, float(values.mean(dtype=np.float64)), float(values.var(dtype=np.float64))))

    modes = [(m, m.training) for m in model.modules()]
    try:
        model.train(training)
        with observing([bn for _, bn in layers], note), tinyres.no_grad():
            for start in range(0, len(images), batch_size):
                model(Tensor(images[start : start + batch_size], dtype=images.dtype))
    finally:
        for module, training in modes:
            module.training = training
    return np.array([pooled_std(p) for p in parts])


def figure7(responses_by_name, axes=None):
    """The paper's Figure 7: ``responses_by_name`` is {network name: stds in layer order} (from
    :func:`layer_responses`). Top panel in the order of the layers, bottom sorted from largest to
    smallest; one colour per network. Returns the Figure. ``axes``: two Axes to draw into."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    if not responses_by_name:
        raise ValueError("figure7: no networks given")
    if axes is None:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(2, 1, figsize=(8, 7.5), sharey=True, layout="constrained")
    elif len(axes) != 2:
        raise ValueError(f"figure7: needs 2 axes (layer order, sorted), got {len(axes)}")
    by_layer, by_size = axes
    smallest = min(np.min(stds) for stds in responses_by_name.values())
    largest = max(np.max(stds) for stds in responses_by_name.values())
    for k, (name, stds) in enumerate(responses_by_name.items()):
        stds = np.asarray(stds, dtype=float)
        index = np.arange(1, len(stds) + 1)
        style = dict(color=f"C{k % 10}", marker="o", ms=2.5, lw=1.3, label=name)
        by_layer.plot(index, stds, **style)
        by_size.plot(index, np.sort(stds)[::-1], **style)
    by_layer.set(title="original order", xlabel="layer index (3x3 convolutions, input side first)")
    by_size.set(title="sorted by magnitude", xlabel="rank (largest first)")
    for ax in axes:
        # Log scale: a network that failed to train (plain-56 stuck at chance) can respond ten
        # times more strongly than the rest, which on a linear axis would flatten every other curve.
        ax.set_yscale("log")
        # ticks as plain numbers (0.8, not 8x10^-1): at 1, 2 and 5 times the powers of 10, or at
        # every multiple when the values span less than a factor of 10 (a single tick otherwise)
        wide = smallest <= 0 or largest / smallest > 10
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5) if wide else range(1, 10)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("std of the response")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return by_layer.figure


# ----- command line ---------------------------------------------------------------------------
def _test_images(test_set, count, mean, dtype):
    """The first ``count`` (default all) of the test images, preprocessed as the trainer
    evaluates them: pixels in [0, 1] minus the training set's mean."""
    from tinyres.data import Loader

    test_x, test_y = test_set
    if count is not None and not 1 <= count <= len(test_x):
        raise ValueError(f"--images must be between 1 and {len(test_x)} (the test set's size), got {count}")
    test_x, test_y = test_x[:count], test_y[:count]
    return Loader(test_x, test_y, len(test_x), "numpy", mean, dtype=dtype).batch(np.arange(len(test_x)))[0]


def _figure7_responses(run_dirs, data_dir, count):
    """{label: layer responses} for the checkpoints in ``run_dirs``, printing one line each."""
    from tinyres.data import cifar10
    from tinyres.evaluate import data_folder, load_run

    labels, responses, test_sets = [], [], {}  # test_sets: folder -> (images, labels), each read once
    for run_dir in run_dirs:
        run = run_files.load(run_dir)
        if not os.path.isfile(os.path.join(run_dir, "checkpoint.npz")):
            raise FileNotFoundError(f"{run_dir} has no checkpoint.npz yet (the trainer writes one at each evaluation)")
        model, config, meta, mean = load_run(run_dir)
        folder = data_folder(config, data_dir)
        if folder not in test_sets:
            test_sets[folder] = cifar10.load(folder)[2:]
        images = _test_images(test_sets[folder], count, mean, config["dtype"])
        labels.append(run.label_at(meta["iteration"]))
        responses.append(layer_responses(model, images))
        print(f"{run_dir}: {labels[-1]}, {len(responses[-1])} layers on {len(images)} test images, "
              f"std {responses[-1].min():.3g} to {responses[-1].max():.3g}")
    return dict(zip(_unique_labels(labels, run_dirs), responses))


@reporting_usage_errors
def main(argv=None):
    parser = ArgumentParser(prog="python -m tinyres.plot", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="figure", required=True)
    six = commands.add_parser("figure6", help="training and test error against iterations")
    six.add_argument("--ymax", type=float, help="top of the error axis in %% (the paper's: 20)")
    seven = commands.add_parser("figure7", help="standard deviations of the 3x3 layers' responses")
    seven.add_argument("--data-dir", help="CIFAR-10 location (default: $TINYRES_DATA, then the folder each run trained on)")
    seven.add_argument("--images", type=int, help="use the first N test images (default: all 10,000)")
    for command in (six, seven):
        command.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="directories written by python -m tinyres.train")
        command.add_argument("-o", "--output", required=True, help="image file to write (.png, .pdf, .svg)")
    args = parser.parse_args(argv)

    try:
        import matplotlib
    except ImportError:
        raise UsageError("python -m tinyres.plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")  # files only: no window, no display needed
    import matplotlib.pyplot as plt
    from matplotlib.backend_bases import FigureCanvasBase

    from tinyres.data import DatasetError

    try:
        folder = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"cannot write {args.output}: the folder {folder} does not exist")
        if os.path.isdir(args.output):
            raise IsADirectoryError(f"-o {args.output} is a folder: give the image file to write, e.g. {os.path.join(args.output, args.figure + '.png')}")
        extension = os.path.splitext(args.output)[1].lstrip(".").lower()
        if extension not in FigureCanvasBase.get_supported_filetypes():
            raise ValueError(f"-o {args.output}: give a file name ending in an image format, such as .png, .pdf or .svg")
        if args.figure == "figure6":
            fig = figure6(args.run_dirs, ymax=args.ymax)
        else:
            fig = figure7(_figure7_responses(args.run_dirs, args.data_dir, args.images))
            shown = f"the first {args.images:,}" if args.images else "all"
            fig.suptitle(f"Responses on {shown} CIFAR-10 test images, evaluation mode", fontsize=10)
        fig.savefig(args.output, dpi=150)
        plt.close(fig)
    except (OSError, ValueError, DatasetError) as error:
        raise UsageError(str(error)) from None
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
