"""Checkpoints as ``.npz`` files: plain arrays plus a JSON header, no pickle. A model's weights
alone go the same way: ``tinyres.save(model.state_dict(), path)`` and
``model.load_state_dict(tinyres.load(path))`` (:func:`save_weights`, :func:`load_weights`).

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


def load(path, read_arrays=True):
    """(arrays, meta) from a checkpoint written by :func:`save`; with ``read_arrays=False`` the
    arrays' names only (each value None), for a reader that needs the header alone."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with _npz(path) as data:
            arrays = {name: data[name] if read_arrays else None for name in data.files if name != META_KEY}
            meta = json.loads(str(data[META_KEY]))
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as error:
        # (NumPy's own text is left out: it suggests allow_pickle=True, the wrong fix)
        raise ValueError(
            f"checkpoint {path} is damaged or is not a tinyres checkpoint ({_why(error)}); "
            "restore it from a copy, or start the run again with another --out"
        ) from error
    return arrays, meta


def save_weights(state, path):
    """``tinyres.save``: write a state dict (name -> array or Tensor, e.g. ``model.state_dict()``)
    to an ``.npz`` file at exactly ``path``, atomically. No pickle: only arrays are stored."""
    from tinyres.backend import backend_of
    from tinyres.tensor import Tensor

    if not isinstance(state, dict):
        raise TypeError(f"tinyres.save: expected a state dict (name -> array), got {type(state).__name__}; "
                        "save a model's weights with tinyres.save(model.state_dict(), path)")
    arrays = {}
    for name, value in state.items():
        if isinstance(value, Tensor):
            value = value.numpy()
        elif not isinstance(value, np.ndarray):
            try:
                value = backend_of(value).to_numpy(value)
            except TypeError:
                value = np.asarray(value)
        if value.dtype.kind not in "fiub":
            raise TypeError(f"tinyres.save: {name!r} is {type(state[name]).__name__} of dtype {value.dtype}; "
                            "only numeric arrays are saved")
        arrays[str(name)] = value
    save(str(path), arrays, {"content": "state dict"})


def load_weights(path):
    """``tinyres.load``: the state dict saved by :func:`save_weights` (or the arrays of any
    ``.npz`` file), as NumPy arrays; for ``model.load_state_dict(tinyres.load(path))``."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"tinyres.load: {path} does not exist")
    try:
        with _npz(path) as data:
            return {name: data[name] for name in data.files if name != META_KEY}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"tinyres.load: {path} is damaged or is not an .npz file of arrays "
                         f"({_why(error)}); it is never unpickled") from None


class _NotAnArchive(ValueError):
    pass


def _npz(path):
    """The open .npz archive at ``path``; an error for another file NumPy reads (a bare .npy
    array under an .npz name), which is no archive of named arrays. Never unpickles."""
    data = np.load(path, allow_pickle=False)
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise _NotAnArchive("it holds one bare array, as np.save writes, not an .npz archive of named arrays")
    return data


def _why(error):
    return str(error) if isinstance(error, _NotAnArchive) else type(error).__name__


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
