"""CIFAR-10: the official binary files (cifar10.py) and batches with the paper's preprocessing
and augmentation on any backend (loader.py)."""


from tinyres.data import cifar10
from tinyres.data.cifar10 import CLASSES, DatasetError, default_data_dir
from tinyres.data.loader import Loader, pixel_mean


class SplitError(ValueError):
    """A subset, test subset or validation split that the images cannot give (the same on every
    process that reads the same data)."""


def cifar10_loaders(data_dir=None, batch_size=128, backend="numpy", seed=0, subset=None,
                    validation=0, eval_batch_size=500, download=True, dtype="float32", test_subset=None,
                    rank=0, ranks=1):
    """The training loader and the evaluation loaders ({"test": ..., "val": ...}) of CIFAR-10.

    Args:
        subset: train on the first ``subset`` training images only (quick experiments).
        validation: hold out the last ``validation`` training images (the paper's 45k/5k split
            uses 5000) as a validation set, evaluated like the test set.
        test_subset: evaluate on the first ``test_subset`` test images only.
        rank, ranks: every loader gives this process the rank-th of ``ranks`` parts of each batch
            (data-parallel training, see loader.py).
    Returns:
        (train_loader, {"test": test_loader[, "val": val_loader]}, mean): mean is the per-pixel
        training mean the loaders subtract (checkpoints keep it for evaluation).
    """
    train_x, train_y, test_x, test_y = cifar10.load(data_dir, download)
    (train_x, train_y), held_out = training_split(train_x, train_y, validation, subset)
    if test_subset is not None:
        if not 0 < test_subset <= len(test_x):
            raise SplitError(f"test_subset must be between 1 and {len(test_x)} images, got {test_subset}")
        test_x, test_y = test_x[:test_subset], test_y[:test_subset]
    mean = pixel_mean(train_x)
    shard = {"rank": rank, "ranks": ranks}
    train = Loader(train_x, train_y, batch_size, backend, mean, augment=True, shuffle=True, seed=seed,
                   drop_last=len(train_x) >= batch_size, dtype=dtype, **shard)
    evaluation = {"test": Loader(test_x, test_y, eval_batch_size, backend, mean, dtype=dtype, **shard)}
    if held_out is not None:
        evaluation["val"] = Loader(*held_out, eval_batch_size, backend, mean, dtype=dtype, **shard)
    return train, evaluation, mean


def training_split(images, labels, validation=0, subset=None):
    """((training images, labels), held-out (images, labels) or None): the last ``validation``
    images are held out, then the first ``subset`` of the rest are trained on."""
    held_out = None
    if validation:
        (images, labels), held_out = validation_split(images, labels, validation)
    if subset is not None:
        if not 0 < subset <= len(images):
            raise SplitError(f"subset must be between 1 and {len(images)} images, got {subset}")
        images, labels = images[:subset], labels[:subset]
    return (images, labels), held_out


def validation_split(images, labels, validation):
    """((training images, labels), (validation images, labels)): the last ``validation`` training
    images are held out."""
    if not 0 < validation < len(images):
        raise SplitError(f"validation must be between 1 and {len(images) - 1} images, got {validation}")
    return (images[:-validation], labels[:-validation]), (images[-validation:], labels[-validation:])


__all__ = ["CLASSES", "DatasetError", "Loader", "SplitError", "cifar10", "cifar10_loaders", "default_data_dir", "pixel_mean", "training_split", "validation_split"]
