"""Test error of a training run's checkpoint.

    python -m tinyres.evaluate RUN_DIR [--data-dir DIR] [--backend cupy]

Rebuilds the network from RUN_DIR/config.json, loads RUN_DIR/checkpoint.npz (model weights,
batch-norm statistics and the training set's pixel mean), and evaluates it on the CIFAR-10 test
set (and the validation split, if the run had one) in evaluation mode.
"""

import tinyres  # noqa: I001  (first: it configures OpenBLAS before NumPy starts it)

import argparse
import os
import sys

import numpy as np

from tinyres import checkpoint, distributed
from tinyres.data import DatasetError, Loader, cifar10, validation_split
from tinyres.models import cifar_resnet
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
    """(model with the checkpoint's weights, config, checkpoint meta, pixel mean)."""
    try:
        config = checkpoint.read_json(os.path.join(run_dir, "config.json"))
    except ValueError as error:
        raise ValueError(f"{error}: {run_dir} is not a complete run directory") from None
    arrays, meta = checkpoint.load(os.path.join(run_dir, "checkpoint.npz"))
    model = cifar_resnet(config["depth"], config["plain"], config["shortcut"]).astype(config["dtype"])
    try:
        model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model.")})
    except (KeyError, ValueError) as error:
        raise ValueError(f"the checkpoint in {run_dir} does not fit the network its config.json describes "
                         f"({error}); the two files come from different runs") from None
    return model.to(backend), config, meta, arrays["data.mean"]


def evaluation_splits(config, data_dir=None):
    """{"test": (images, labels)[, "val": ...]}: the whole test set, and the validation images the
    run held out."""
    train_x, train_y, test_x, test_y = cifar10.load(data_dir or config.get("data_dir"))
    splits = {"test": (test_x, test_y)}
    if config.get("validation"):
        splits["val"] = validation_split(train_x, train_y, config["validation"])[1]
    return splits


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinyres.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a directory written by python -m tinyres.train")
    parser.add_argument("--data-dir", help="CIFAR-10 location (default: the run's, then $TINYRES_DATA)")
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise SystemExit(f"error: --batch-size must be at least 1, got {args.batch_size}")
    try:
        model, config, meta, mean = load_run(args.run_dir, args.backend)
        splits = evaluation_splits(config, args.data_dir)
    except (FileNotFoundError, ValueError, DatasetError, tinyres.BackendUnavailable) as error:
        raise SystemExit(f"error: {error}") from None
    name = f"{'plain' if config['plain'] else 'ResNet'}-{config['depth']}"
    for split, (images, labels) in splits.items():
        loader = Loader(images, labels, args.batch_size, args.backend, mean, dtype=config["dtype"])
        loss, error = evaluate(model, loader)
        title = {"test": "test", "val": "validation"}[split]
        print(f"{name} at iteration {meta['iteration']}: {title} error {error:.2%} (loss {loss:.4f}) on {loader.num_images} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
