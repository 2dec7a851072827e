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

Under mpiexec (tinyres/distributed.py) every process builds the same loader with its own
``rank`` of ``ranks``: the batches stay the global ones, in the same order, and each process
takes its part of every batch, the rank-th of ``ranks`` consecutive slices (64 of 128 images for
2 ranks). The augmentation is still drawn for the whole batch, and each process uses the draws of
its images: an image's crop and flip depend on the seed and its place in the global batch, not
on the number of processes, and one process (rank 0 of 1) gets exactly the batches it always got.
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
        rank, ranks: this process takes the rank-th of ``ranks`` parts of every batch (see above).
    """

    def __init__(self, images, labels, batch_size, backend, mean, augment=False, shuffle=False,
                 seed=0, drop_last=False, dtype="float32", rank=0, ranks=1):
        from tinyres.backend import get_backend

        if len(images) == 0:
            raise ValueError("Loader: no images")
        if batch_size < 1:
            raise ValueError(f"Loader: batch_size must be at least 1, got {batch_size}")
        if not 0 <= rank < ranks:
            raise ValueError(f"Loader: rank must be between 0 and ranks - 1 = {ranks - 1}, got {rank}")
        self.backend = get_backend(backend)
        self.images = self.backend.asarray(images)
        self.labels = self.backend.asarray(np.asarray(labels, dtype=np.int64))
        self.mean = self.backend.asarray(np.asarray(mean, dtype=dtype))
        self.batch_size, self.augment, self.shuffle = batch_size, augment, shuffle
        self.seed, self.drop_last, self.dtype = seed, drop_last, np.dtype(dtype)
        self.rank, self.ranks = rank, ranks

    def __len__(self):
        """Batches per epoch."""
        n = len(self.images)
        return n // self.batch_size if self.drop_last and n >= self.batch_size else math.ceil(n / self.batch_size)

    @property
    def num_images(self):
        """All images, those of every rank."""
        return len(self.images)

    def epoch(self, epoch=0, start=0):
        """Yield the batches of one epoch (this rank's part of each), from batch number ``start``."""
        n = len(self.images)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        for b in range(start, len(self)):
            indices = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.batch(indices, np.random.default_rng([self.seed, epoch, b]), self.part(len(indices)))

    def __iter__(self):
        return self.epoch(0)

    def part(self, n):
        """This rank's slice of a batch of ``n`` images: the rank-th of ``ranks`` consecutive ones
        (equal when ``ranks`` divides ``n``)."""
        return slice(n * self.rank // self.ranks, n * (self.rank + 1) // self.ranks)

    def batch(self, indices, rng=None, part=slice(None)):
        """Preprocess the images at ``indices[part]`` (host ints) of the batch ``indices``; ``rng``
        draws the augmentation of the whole batch."""
        device_indices = self.backend.asarray(indices[part])
        x = self.images[device_indices].astype(self.dtype)
        x *= self.dtype.type(1 / 255)
        x -= self.mean
        if self.augment:
            x = self._random_crop_and_flip(x, rng, len(indices), part)
        return Tensor(x, dtype=self.dtype), self.labels[device_indices]

    def _random_crop_and_flip(self, x, rng, batch_size=None, part=slice(None)):
        """Pad by PAD zeros, take a random 32x32 window, mirror it with probability 1/2. The
        choices are drawn for the whole batch (``batch_size`` images), and those of ``part`` of
        it, the images in ``x``, are used."""
        xp = self.backend.xp
        n, c, h, w = x.shape
        padded = xp.zeros((n, c, h + 2 * PAD, w + 2 * PAD), dtype=x.dtype)
        padded[:, :, PAD : PAD + h, PAD : PAD + w] = x
        drawn = batch_size or n  # host ints, drawn in a fixed order: the tops, lefts, then flips
        top, left = rng.integers(0, 2 * PAD + 1, size=(2, drawn))[:, part]
        flip = (rng.random(drawn) < 0.5)[part]
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
