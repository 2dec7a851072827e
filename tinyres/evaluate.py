"""Test error of a training run's checkpoint.

    python -m tinyres.evaluate RUN_DIR [--data-dir DIR] [--backend cupy]

Rebuilds the network from the settings recorded in RUN_DIR/checkpoint.npz (config.json must agree
with them), loads its weights, batch-norm statistics and the training set's pixel mean, and
evaluates it on the CIFAR-10 test set (and the validation split, if the run had one) in
evaluation mode. The images come from --data-dir, else $TINYRES_DATA, else the run's own folder.
"""

import tinyres  # noqa: I001  (first: it configures OpenBLAS before NumPy starts it)

import os
import sys

import numpy as np

from tinyres import distributed, runs
from tinyres.cli import ArgumentParser, UsageError, reporting_usage_errors
from tinyres.data import DatasetError, Loader, cifar10, pixel_mean, training_split
from tinyres.nn.functional import cross_entropy


def evaluate(model, loader, comm=distributed.Communicator()):
    """(mean loss, error rate) of ``model`` in evaluation mode over every batch of ``loader``.

    With a communicator of several ranks, each evaluates its part of every batch (the loader's
    rank) and the sums of losses and errors are added up over the ranks."""
    model.eval()
    total_loss, errors = 0.0, 0
    with tinyres.no_grad():
        for images, labels in loader.epoch():
            if len(labels) == 0:  # more ranks than images in this batch
                continue
            logits = model(images)
            total_loss += cross_entropy(logits, labels).item() * len(labels)
            errors += int((logits.data.argmax(axis=1) != labels).sum())
    total_loss, errors = comm.allreduce(np.array([total_loss, errors], dtype=np.float64))
    return float(total_loss) / loader.num_images, float(errors) / loader.num_images


def load_run(run_dir, backend="numpy"):
    """(model with the checkpoint's weights, config, checkpoint meta, pixel mean). The network is
    built from the checkpoint's own record of the settings; config.json must agree with it."""
    folder = runs.RunDir(run_dir)
    arrays, meta = folder.load_checkpoint()
    config = folder.recorded_config(meta)
    model = runs.build_model(config)
    try:
        model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model.")})
    except (KeyError, ValueError) as error:
        raise runs.RunDirError(f"the checkpoint in {run_dir} does not fit the network it records "
                               f"({error}); it is damaged: restore it from a copy") from None
    return model.to(backend), config, meta, arrays["data.mean"]


def data_folder(config, data_dir=None):
    """Where the images are: --data-dir, else $TINYRES_DATA, else the folder the run trained on,
    else (a run that used the default) the default. A run's folder that is gone is an error: the
    default would be another copy of CIFAR-10, downloaded."""
    saved = config.get("data_dir")
    if data_dir or os.environ.get("TINYRES_DATA"):
        return data_dir or os.environ.get("TINYRES_DATA")
    if saved and not os.path.isdir(saved):
        raise DatasetError(f"the run trained on the CIFAR-10 in {saved}, which is no longer there; give its "
                           "new place with --data-dir (or $TINYRES_DATA)")
    return saved


def evaluation_splits(config, mean, data_dir=None):
    """{"test": (images, labels)[, "val": ...]}: the whole test set, and the validation images the
    run held out; DatasetError if the training images are not the run's (checked by their mean)."""
    train_x, train_y, test_x, test_y = cifar10.load(data_folder(config, data_dir))
    (train_x, _), held_out = training_split(train_x, train_y, config["validation"], config["subset"])
    if len(train_x) == 0 or not np.array_equal(pixel_mean(train_x), mean):
        raise DatasetError("the CIFAR-10 images found are not the ones this run was trained on (their pixel mean "
                           "differs from the checkpoint's); point --data-dir at the run's data")
    splits = {"test": (test_x, test_y)}
    if held_out is not None:
        splits["val"] = held_out
    return splits


@reporting_usage_errors
def main(argv=None):
    parser = ArgumentParser(prog="python -m tinyres.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a directory written by python -m tinyres.train")
    parser.add_argument("--data-dir", help="CIFAR-10 location (default: $TINYRES_DATA, then the folder the run used)")
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    if not os.path.isdir(args.run_dir):
        raise UsageError(f"{args.run_dir} is not a folder: give the run directory that python -m tinyres.train wrote")
    try:
        model, config, meta, mean = load_run(args.run_dir, args.backend)
        splits = evaluation_splits(config, mean, args.data_dir)
    except (ValueError, DatasetError, tinyres.BackendUnavailable) as error:
        raise UsageError(str(error)) from None
    name = runs.run_name(config)
    for split, (images, labels) in splits.items():
        loader = Loader(images, labels, args.batch_size, args.backend, mean, dtype=config["dtype"])
        loss, error = evaluate(model, loader)
        title = {"test": "test", "val": "validation"}[split]
        print(f"{name} at iteration {meta['iteration']}: {title} error {error:.2%} (loss {loss:.4f}) on {loader.num_images} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
