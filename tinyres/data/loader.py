"""Mini-batches with the paper's preprocessing and augmentation, on any backend.

Section 4.2 of the paper: "4 pixels are padded on each side, and a 32x32 crop is randomly
sampled from the padded image or its horizontal flip. For testing, we only evaluate the single
view of the original 32x32 image", after subtracting the per-pixel mean (of the training set).
Pixels are also scaled to [0, 1] (batch norm makes the network indifferent to that scale).

The images stay uint8 on the backend (150 MB for all 50,000); each batch is gathered, converted,
mean-subtracted, padded, cropped and flipped there, so on a GPU nothing large crosses the bus.
The random choices (order, crop offsets, flips) are drawn on the host from generators seeded by
(seed, epoch) and (seed, epoch, batch): every batch is a pure function of the seed and its
position, so a resumed run sees exactly the batches an uninterrupted run would have, on any
backend.
"""

import math

import numpy as np

from tinyres.tensor import Tensor

PAD = 4  # pixels of zero padding on each side before the random crop


class Loader:
    """Batches of (images tensor (B, 3, 32, 32) float, labels array (B,)) from uint8 images.

    Args:
        images: uint8 NumPy array (N, 3, 32, 32); labels: integer array (N,).
        batch_size: images per batch.
        backend: where the batches live (a Backend or its name).
        mean: (3, 32, 32) per-pixel mean in [0, 1] units, subtracted from every image.
        augment: random crops and flips (training) or the plain images (evaluation).
        shuffle: a new random order each epoch.
        drop_last: skip a final batch smaller than batch_size (training does, as usual).
    """

    def __init__(self, images, labels, batch_size, backend, mean, augment=False, shuffle=False,
                 seed=0, drop_last=False, dtype="float32"):
        from tinyres.backend import get_backend

        if len(images) == 0:
            raise ValueError("Loader: no images")
        if batch_size < 1:
            raise ValueError(f"Loader: batch_size must be at least 1, got {batch_size}")
        self.backend = get_backend(backend)
        self.images = self.backend.asarray(images)
        self.labels = self.backend.asarray(np.asarray(labels, dtype=np.int64))
        self.mean = self.backend.asarray(np.asarray(mean, dtype=dtype))
        self.batch_size, self.augment, self.shuffle = batch_size, augment, shuffle
        self.seed, self.drop_last, self.dtype = seed, drop_last, np.dtype(dtype)

    def __len__(self):
        """Batches per epoch."""
        n = len(self.images)
        return n // self.batch_size if self.drop_last and n >= self.batch_size else math.ceil(n / self.batch_size)

    @property
    def num_images(self):
        return len(self.images)

    def epoch(self, epoch=0, start=0):
        """Yield the batches of one epoch, beginning with batch number ``start``."""
        n = len(self.images)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        for b in range(start, len(self)):
            indices = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.batch(indices, np.random.default_rng([self.seed, epoch, b]))

    def __iter__(self):
        return self.epoch(0)

    def batch(self, indices, rng=None):
        """Preprocess the images at ``indices`` (host ints); ``rng`` draws the augmentation."""
        xp = self.backend.xp
        device_indices = self.backend.asarray(indices)
        x = self.images[device_indices].astype(self.dtype)
        x *= self.dtype.type(1 / 255)
        x -= self.mean
        if self.augment:
            x = self._random_crop_and_flip(x, rng)
        return Tensor(x, dtype=self.dtype), self.labels[device_indices]

    def _random_crop_and_flip(self, x, rng):
        """Pad by PAD zeros, take a random 32x32 window, mirror it with probability 1/2."""
        xp = self.backend.xp
        n, c, h, w = x.shape
        padded = xp.zeros((n, c, h + 2 * PAD, w + 2 * PAD), dtype=x.dtype)
        padded[:, :, PAD : PAD + h, PAD : PAD + w] = x
        top, left = rng.integers(0, 2 * PAD + 1, size=(2, n))  # host ints, drawn in a fixed order
        flip = rng.random(n) < 0.5
        rows = top[:, None] + np.arange(h)  # (n, h) source row of each output row
        cols = left[:, None] + np.where(flip[:, None], np.arange(w)[::-1], np.arange(w))  # (n, w)
        to_device = self.backend.asarray
        return padded[
            to_device(np.arange(n)[:, None, None, None]),
            to_device(np.arange(c)[None, :, None, None]),
            to_device(rows[:, None, :, None]),
            to_device(cols[:, None, None, :]),
        ]


def pixel_mean(images):
    """Per-pixel mean of uint8 images (N, 3, 32, 32), in [0, 1] units, as float32."""
    total = np.zeros(images.shape[1:], np.float64)
    for start in range(0, len(images), 10_000):  # in chunks: no 600 MB float copy
        total += images[start : start + 10_000].sum(axis=0, dtype=np.float64)
    return (total / (255.0 * len(images))).astype(np.float32)
