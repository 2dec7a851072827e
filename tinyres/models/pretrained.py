"""Weights trained by tinyres's own reproduction runs, shipped inside the package.

    model = cifar_resnet(20, pretrained=True).eval()
    x = images.astype(np.float32) / 255 - model.pixel_mean       # uint8 images, (N, 3, 32, 32)
    labels = model(tinyres.Tensor(x)).data.argmax(axis=1)

The networks were trained as the paper trains them (its CIFAR-10 recipe, section 4.2), with the
inputs scaled to [0, 1] and the training set's per-pixel mean subtracted; that mean travels in the
file and is set on the model as ``pixel_mean``. Each file is the final checkpoint of one run in
``results/`` (whose ``log.txt`` gives the date, machine, commit and command), made by

    python -m tinyres.models.pretrained results/cpu-resnet20-64k --replace

which writes the file into ``tinyres/models/weights/`` and prints the entry that describes it, to
add to ``SHIPPED`` in ``tinyres/models/shipped.py``. A file already there is replaced only with
``--replace`` (its entry in ``SHIPPED`` then has to change with it). A file is checked against its SHA-256 before
it is read.
"""

import hashlib
import os
import sys

import numpy as np

from tinyres import checkpoint
from tinyres.cli import ArgumentParser, UsageError, reporting_usage_errors
from tinyres.models import shipped

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
MEAN_KEY = "pixel_mean"


def load_pretrained(model):
    """Load the shipped weights of ``model``'s depth into ``model`` (a ResNet as built by
    ``cifar_resnet`` with its defaults) and set ``model.pixel_mean``; returns ``model``."""
    if model.plain or model.shortcut_option != "A" or model.zero_channels != "end" or model.fc.weight.shape[0] != 10:
        raise ValueError(
            "cifar_resnet(pretrained=True): the shipped weights are for ResNets with the defaults "
            "(plain=False, shortcut='A', num_classes=10, zero_channels='end'); build the network with those"
        )
    entry = shipped.SHIPPED.get(model.depth)
    if entry is None:
        raise ValueError(f"cifar_resnet(pretrained=True): no weights are shipped for depth {model.depth}. "
                         f"Shipped: {shipped.describe()}")
    path = os.path.join(WEIGHTS_DIR, entry.file)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"cifar_resnet(pretrained=True): {path} is missing from this installation; "
                                "reinstall tinyres")
    found = sha256(path)
    if found != entry.sha256:
        raise ValueError(f"cifar_resnet(pretrained=True): {path} is not the file that was shipped (SHA-256 "
                         f"{found[:12]}..., expected {entry.sha256[:12]}...); it is damaged or was replaced: "
                         "reinstall tinyres")
    arrays = checkpoint.load_weights(path)
    mean = arrays.pop(MEAN_KEY)
    model.load_state_dict(arrays)
    model.pixel_mean = mean
    return model


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export(run_dir, folder=WEIGHTS_DIR, replace=False):
    """Write the final weights of the finished ResNet run in ``run_dir`` (float32, with the
    training set's pixel mean) to ``folder``; returns (depth, the :class:`shipped.Shipped` entry that
    describes the file). An existing file of that depth is overwritten only if ``replace``."""
    from tinyres import runs
    from tinyres.evaluate import load_run

    run = runs.load(run_dir).require_metrics()
    config = run.config
    if config["plain"] or config["shortcut"] != "A":
        raise ValueError(f"{run_dir} trained {run.name} with shortcut {config['shortcut']}; only ResNets with "
                         "option A shortcuts (cifar_resnet's default) are shipped")
    if config.get("subset") or config.get("test_subset") or config.get("validation"):
        raise ValueError(f"{run_dir} trained on part of the training images (--subset {config.get('subset')}, --validation "
                         f"{config.get('validation')}) or measured its test error on part of the test set (--test-subset "
                         f"{config.get('test_subset')}); a shipped network's test error is that of a run on all 50,000 training "
                         "images, measured on all 10,000 test images")
    model, _, meta, mean = load_run(run_dir)
    if meta["iteration"] == config["iterations"] and not run.complete:
        raise ValueError(f"{run_dir} finished (its checkpoint is at iteration {meta['iteration']}) but its metrics.csv "
                         f"lacks the last rows (cut off by a crash?): python -m tinyres.train --out {run_dir} --resume "
                         "writes them back")
    if not run.complete or meta["iteration"] != config["iterations"]:
        raise ValueError(f"{run_dir} is not finished ({run.state}; checkpoint at iteration {meta['iteration']}): "
                         "ship only the weights of a run that reached its planned length")
    name = f"cifar10-resnet{config['depth']}.npz"
    if os.path.exists(os.path.join(folder, name)) and not replace:
        ships = shipped.SHIPPED.get(config["depth"])
        what = f" (shipped: {ships.run}, {ships.test_error:.2%} test error)" if ships and ships.file == name else ""
        raise FileExistsError(f"{os.path.join(folder, name)} exists{what}; nothing was written. Replace it with "
                              f"--replace (then update its SHIPPED entry), or write elsewhere with --folder")
    arrays = {name: value.astype(np.float32) for name, value in model.state_dict().items()}
    arrays[MEAN_KEY] = np.asarray(mean, np.float32)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise FileExistsError(f"--folder {folder} is a file, not a folder: choose another --folder")
    os.makedirs(folder, exist_ok=True)
    checkpoint.save_weights(arrays, os.path.join(folder, name))
    entry = shipped.Shipped(name, sha256(os.path.join(folder, name)), float(run.metrics["test_error"][-1]),
                            int(meta["iteration"]), os.path.basename(os.path.normpath(run_dir)))
    return config["depth"], entry


@reporting_usage_errors
def main(argv=None):
    parser = ArgumentParser(prog="python -m tinyres.models.pretrained",
                            description="Write a finished run's weights for shipping, and print its SHIPPED entry.")
    parser.add_argument("run_dir")
    parser.add_argument("--folder", default=WEIGHTS_DIR, help="where to write the file (default: the package's)")
    parser.add_argument("--replace", action="store_true", help="overwrite a file of the same depth already in --folder")
    args = parser.parse_args(argv)
    try:
        depth, entry = export(args.run_dir, args.folder, args.replace)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        raise UsageError(str(error)) from None
    print(f"wrote {os.path.join(args.folder, entry.file)}; add to SHIPPED in {shipped.__file__}:")
    print(f"    {depth}: {entry!r},")
    return 0


if __name__ == "__main__":
    sys.exit(main())
