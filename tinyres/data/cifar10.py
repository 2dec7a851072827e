"""CIFAR-10 from the dataset's official *binary* archive: no pickle, just bytes.

``cifar-10-binary.tar.gz`` (from https://www.cs.toronto.edu/~kriz/cifar.html) holds
``cifar-10-batches-bin/`` with five training files ``data_batch_1.bin`` .. ``data_batch_5.bin``
and ``test_batch.bin``, 10,000 images each. Every image is a record of 3073 bytes: one label byte
(0-9), then 1024 red, 1024 green and 1024 blue pixel bytes, each plane row-major 32x32.

Where the files come from, in order:
1. ``DATA_DIR/cifar-10-batches-bin/`` if it exists (used as is), or DATA_DIR itself if it holds
   the batch files (you pointed at that folder);
2. ``DATA_DIR/cifar-10-binary.tar.gz`` if it exists (checked against its published MD5, then
   extracted);
3. otherwise downloaded into DATA_DIR first.
DATA_DIR is ``--data-dir``, else ``$TINYRES_DATA``, else ``~/.cache/tinyres`` (``$XDG_CACHE_HOME``).
Downloads and extraction write to a temporary name and rename at the end, so an interrupted
download never leaves a file that looks complete.
"""

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request

import numpy as np

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
ARCHIVE = "cifar-10-binary.tar.gz"
ARCHIVE_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # published on the dataset's home page
FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILES = ["test_batch.bin"]
RECORD_BYTES = 1 + 3 * 32 * 32
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class DatasetError(RuntimeError):
    """The data is missing, incomplete or corrupt; the message says which file and what to do."""


def default_data_dir():
    """$TINYRES_DATA, else $XDG_CACHE_HOME/tinyres, else ~/.cache/tinyres."""
    if os.environ.get("TINYRES_DATA"):
        return os.environ["TINYRES_DATA"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "tinyres")


def locate(data_dir=None, download=True):
    """The path of ``cifar-10-batches-bin/`` inside ``data_dir``, extracting or downloading it
    first if needed (see the module docstring). Raises DatasetError saying where to put the
    files when it cannot."""
    data_dir = data_dir or default_data_dir()
    if os.path.lexists(data_dir) and not os.path.exists(data_dir):
        raise DatasetError(f"{data_dir} is a link to nothing ({os.readlink(data_dir)!r}, a missing folder or a link to "
                           f"itself): point --data-dir (or $TINYRES_DATA) at the folder that holds {FOLDER}/")
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise DatasetError(f"{data_dir} is a file, not a folder: point --data-dir (or $TINYRES_DATA) at the folder that holds {FOLDER}/ or {ARCHIVE}")
    if any(os.path.isfile(os.path.join(data_dir, name)) for name in TRAIN_FILES + TEST_FILES):
        return data_dir  # the batch files themselves: data_dir is cifar-10-batches-bin/
    folder = os.path.join(data_dir, FOLDER)
    if os.path.isdir(folder):
        return folder
    archive = os.path.join(data_dir, ARCHIVE)
    if not os.path.exists(archive):
        if not download:
            raise _missing(data_dir, "downloading is switched off")
        _download(archive, data_dir)
    _check_md5(archive)
    _extract(archive, data_dir)
    return folder


def load(data_dir=None, download=True):
    """(train_images, train_labels, test_images, test_labels) as NumPy arrays: images uint8
    (N, 3, 32, 32), labels int64 (N,)."""
    folder = locate(data_dir, download)
    train = [read_batch(os.path.join(folder, name)) for name in TRAIN_FILES]
    test = [read_batch(os.path.join(folder, name)) for name in TEST_FILES]
    counts = {len(labels) for _, labels in train + test}
    if len(counts) > 1:  # a file cut at a record boundary is still a multiple of 3073 bytes
        sizes = ", ".join(f"{name}: {len(labels)}" for name, (_, labels) in zip(TRAIN_FILES + TEST_FILES, train + test))
        raise DatasetError(
            f"CIFAR-10 files in {folder} hold different numbers of images ({sizes}); every "
            "batch file holds the same number (10,000 in the official archive), so one is "
            f"truncated. Delete {folder} to extract it again."
        )
    images = np.concatenate([i for i, _ in train])
    labels = np.concatenate([l for _, l in train])
    return images, labels, test[0][0], test[0][1]


def read_batch(path):
    """Read one binary batch file: (images uint8 (N, 3, 32, 32), labels int64 (N,))."""
    if not os.path.isfile(path):
        raise DatasetError(f"CIFAR-10 file {path} is missing. {_redo(path)}")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise DatasetError(
            f"CIFAR-10 file {path} is truncated or corrupt: {raw.size} bytes is not a whole "
            f"number of {RECORD_BYTES}-byte records. {_redo(path)}"
        )
    records = raw.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise DatasetError(f"CIFAR-10 file {path} is corrupt: record {bad} has label {labels[bad]}, labels are 0-9")
    images = records[:, 1:].reshape(-1, 3, 32, 32)
    _check_not_degenerate(path, images, labels)
    return images, labels


def _redo(path):
    """How to get a good copy of the batch file ``path``: from the archive beside its folder if
    there is one, else from wherever the files came from."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isfile(os.path.join(os.path.dirname(folder), ARCHIVE)):
        return f"Delete {folder} to extract the archive beside it again."
    return (f"Put a good copy of the file there, or point --data-dir at another copy of CIFAR-10 (there is no "
            f"{ARCHIVE} beside {folder} to extract it from)")


def _check_not_degenerate(path, images, labels):
    """A file whose images all share one label, or whose pixels are all one value, is damaged (an
    all-zero file reads this way) and would train or test silently on nothing."""
    fix = f"the file is damaged. {_redo(path)}"
    if len(labels) > 1 and labels.min() == labels.max():
        raise DatasetError(f"CIFAR-10 file {path}: all {len(labels)} images have label {labels[0]}; {fix}")
    if images.min() == images.max():
        raise DatasetError(f"CIFAR-10 file {path}: every pixel of every image is {images.flat[0]}; {fix}")


def write_batch(path, images, labels):
    """Write images (N, 3, 32, 32) uint8 and labels in the binary format (tests make small
    datasets with it)."""
    records = np.concatenate([np.asarray(labels, np.uint8)[:, None], np.asarray(images, np.uint8).reshape(len(labels), -1)], axis=1)
    records.tofile(path)


def _missing(data_dir, reason):
    return DatasetError(
        f"CIFAR-10 not found in {data_dir} and {reason}. Put either the extracted folder "
        f"{FOLDER}/ or the archive {ARCHIVE} (from {URL}, MD5 {ARCHIVE_MD5}) in {data_dir}, "
        "or point --data-dir (or $TINYRES_DATA) at the folder that holds them."
    )


def _download(archive, data_dir):
    created = not os.path.exists(data_dir)
    try:
        os.makedirs(data_dir, exist_ok=True)
    except OSError as error:
        raise _missing(data_dir, f"that folder cannot be created to download it into ({error})") from None
    partial = archive + ".part"
    print(f"downloading CIFAR-10 (163 MB) from {URL} to {data_dir}", flush=True)
    try:
        with urllib.request.urlopen(URL, timeout=60) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
    except OSError as error:
        if os.path.exists(partial):
            os.remove(partial)
        if created:  # a mistyped --data-dir should not leave an empty folder behind
            os.rmdir(data_dir)
        raise _missing(data_dir, f"downloading it failed ({error})") from error
    os.replace(partial, archive)


def _check_md5(archive):
    digest = hashlib.md5()
    with open(archive, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != ARCHIVE_MD5:
        raise DatasetError(
            f"{archive} has MD5 {digest.hexdigest()}, expected {ARCHIVE_MD5}: the download is "
            "incomplete or the file is not the official binary archive. Delete it and run again."
        )


def _extract(archive, data_dir):
    """Extract into a temporary folder beside the target, then rename: all or nothing."""
    try:
        staging = tempfile.mkdtemp(prefix=".extract-", dir=data_dir)
    except OSError as error:
        raise DatasetError(
            f"{archive} cannot be extracted where it is ({error}). Copy it into a folder you can write "
            f"to and point --data-dir there, or extract it yourself: tar xzf {archive} -C FOLDER"
        ) from None
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(FOLDER + "/")]
            for member in members:
                tar.extract(member, staging, filter="data") if hasattr(tarfile, "data_filter") else tar.extract(member, staging)
        extracted = os.path.join(staging, FOLDER)
        if not os.path.isdir(extracted):
            raise DatasetError(f"{archive} does not contain {FOLDER}/: it is not the binary CIFAR-10 archive")
        os.replace(extracted, os.path.join(data_dir, FOLDER))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
