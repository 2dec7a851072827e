"""Test error of a training run's checkpoint.

    python -m tinyres.evaluate RUN_DIR [--data-dir DIR] [--backend cupy]

Rebuilds the network from RUN_DIR/config.json, loads RUN_DIR/checkpoint.npz (model weights,
batch-norm statistics and the training set's pixel mean), and evaluates it on the CIFAR-10 test
set (and the validation split, if the run had one) in evaluation mode.
"""

import tinyres  # noqa: I001  (first: it configures OpenBLAS before NumPy starts it)

import argparse
import json
import os
import sys

from tinyres import checkpoint
from tinyres.data import DatasetError, Loader, cifar10
from tinyres.models import cifar_resnet
from tinyres.nn.functional import cross_entropy


def evaluate(model, loader):
    """(mean loss, error rate) of ``model`` in evaluation mode over every batch of ``loader``."""
    model.eval()
    total_loss, errors = 0.0, 0
    with tinyres.no_grad():
        for images, labels in loader.epoch():
            logits = model(images)
            total_loss += cross_entropy(logits, labels).item() * len(labels)
            errors += int((logits.data.argmax(axis=1) != labels).sum())
    return total_loss / loader.num_images, errors / loader.num_images


def load_run(run_dir, backend="numpy"):
    """(model with the checkpoint's weights, config, checkpoint meta, pixel mean)."""
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    arrays, meta = checkpoint.load(os.path.join(run_dir, "checkpoint.npz"))
    model = cifar_resnet(config["depth"], config["plain"], config["shortcut"]).astype(config["dtype"])
    model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model.")})
    return model.to(backend), config, meta, arrays["data.mean"]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinyres.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a directory written by python -m tinyres.train")
    parser.add_argument("--data-dir", help="CIFAR-10 location (default: the run's, then $TINYRES_DATA)")
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args(argv)
    try:
        model, config, meta, mean = load_run(args.run_dir, args.backend)
        _, _, test_x, test_y = cifar10.load(args.data_dir or config.get("data_dir"))
    except (FileNotFoundError, ValueError, DatasetError, tinyres.BackendUnavailable) as error:
        raise SystemExit(f"error: {error}") from None
    loader = Loader(test_x, test_y, args.batch_size, args.backend, mean, dtype=config["dtype"])
    loss, error = evaluate(model, loader)
    name = f"{'plain' if config['plain'] else 'ResNet'}-{config['depth']}"
    print(f"{name} at iteration {meta['iteration']}: test error {error:.2%} (loss {loss:.4f}) on {loader.num_images} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
