"""Execute every chapter notebook in place, so the committed notebooks carry their outputs.

    TINYRES_DATA=path/to/cifar python chapters/build.py [chapters/05_*.ipynb ...]

Runs in quick mode (TINYRES_QUICK=1, as CI does) unless TINYRES_QUICK=0 is set; the results of
long runs come from results/ either way. Needs the real CIFAR-10 (TINYRES_DATA, or the default
cache, or a download).
"""

import os
import sys
import time
from pathlib import Path

import nbclient
import nbformat

HERE = Path(__file__).resolve().parent


def main(paths):
    os.environ.setdefault("TINYRES_QUICK", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    for path in paths or sorted(HERE.glob("*.ipynb")):
        path = Path(path)
        start = time.time()
        notebook = nbformat.read(str(path), as_version=4)
        nbclient.NotebookClient(notebook, timeout=1800, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}}).execute()
        nbformat.write(notebook, str(path))
        print(f"{path.name}: {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
