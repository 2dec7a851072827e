"""Checkpoints as ``.npz`` files: plain arrays plus a JSON header, no pickle.

A checkpoint is written to ``PATH.tmp``, flushed to disk, then renamed over ``PATH`` (an atomic
step on POSIX file systems), so a run killed at any moment leaves either the old checkpoint or
the new one, never half a file. Loading uses ``allow_pickle=False``: a checkpoint cannot run code.
"""

import json
import os
import zipfile

import numpy as np

META_KEY = "meta.json"


def save(path, arrays, meta):
    """Write ``arrays`` (name -> NumPy array) and ``meta`` (a JSON-able dict) to ``path``."""
    if META_KEY in arrays:
        raise ValueError(f"checkpoint: the array name {META_KEY!r} is reserved")
    partial = path + ".tmp"
    with open(partial, "wb") as f:
        np.savez(f, **arrays, **{META_KEY: np.array(json.dumps(meta))})
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def load(path):
    """(arrays, meta) from a checkpoint written by :func:`save`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files if name != META_KEY}
            meta = json.loads(str(data[META_KEY]))
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as error:
        # (the error's own text is left out: NumPy's suggests allow_pickle=True, the wrong fix)
        raise ValueError(
            f"checkpoint {path} is damaged or is not a tinyres checkpoint ({type(error).__name__}); "
            "restore it from a copy, or start the run again with another --out"
        ) from error
    return arrays, meta


def read_json(path):
    """The JSON value in ``path``; ValueError naming the file when it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is missing or unreadable ({type(error).__name__})") from None


def write_json(path, value):
    """Write JSON atomically (temporary file, then rename)."""
    partial = path + ".tmp"
    with open(partial, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
