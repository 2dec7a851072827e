"""Every chapter notebook runs top to bottom in quick mode, on a small CIFAR-10 in the official
binary layout that this test writes (so the notebooks' code paths run; what they learn from
random pixels is meaningless, which is why the committed outputs come from the real data)."""

import os
from pathlib import Path

import numpy as np
import pytest

CHAPTERS = sorted((Path(__file__).resolve().parent.parent / "chapters").glob("*.ipynb"))


@pytest.fixture(scope="module")
def chapter_data(tmp_path_factory):
    from tinyres.data import cifar10

    root = tmp_path_factory.mktemp("cifar")
    folder = root / cifar10.FOLDER
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, count in [(n, 400) for n in cifar10.TRAIN_FILES] + [(cifar10.TEST_FILES[0], 400)]:
        cifar10.write_batch(str(folder / name), rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, count))
    return root


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_runs_top_to_bottom_in_quick_mode(path, chapter_data, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")  # the kernel that runs the cells (the [test] extra has it)
    monkeypatch.setenv("TINYRES_DATA", str(chapter_data))
    monkeypatch.setenv("TINYRES_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(str(path), as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError, with the failing cell and traceback, on any error


def test_notebooks_extra_installs_every_module_the_chapters_import():
    # `pip install -e '.[notebooks]'` is all a reader installs: each module a chapter imports must
    # be in the standard library, in this repository, or come with the core or notebooks requirements.
    import importlib.metadata
    import json
    import re
    import sys

    pyproject = (CHAPTERS[0].parent.parent / "pyproject.toml").read_text()
    listed = re.search(r"^dependencies = \[(.*?)\]", pyproject, flags=re.S | re.M).group(1)
    listed += re.search(r"^notebooks = \[(.*?)\]", pyproject, flags=re.M).group(1)
    installed = {re.split(r"[<>=\[ ]", name)[0].lower() for name in re.findall(r'"([^"]+)"', listed)}
    ours = {"tinyres", "solutions", "conv_formulations"}  # the package, chapters/solutions, benchmarks/
    distributions = importlib.metadata.packages_distributions()
    missing = set()
    for path in CHAPTERS:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            for module in re.findall(r"^\s*(?:from|import)\s+(\w+)", "".join(cell["source"]), flags=re.M):
                if module in sys.stdlib_module_names or module in ours:
                    continue
                names = {d.lower() for d in distributions.get(module, [module])}
                if not names & installed:
                    missing.add(f"{path.name} imports {module}")
    assert not missing, f"add to the [notebooks] extra in pyproject.toml: {sorted(missing)}"


def test_library_source_printed_in_the_chapters_is_the_current_source():
    # Chapters print the library's own code (inspect.getsource, a module's __doc__) so that readers
    # see what runs. A stored output goes stale when that code changes and the chapter is not
    # re-executed: every line such a cell printed must still be a line of the package.
    import json
    import re

    package = CHAPTERS[0].parent.parent / "tinyres"
    lines = {line.rstrip() for path in package.rglob("*.py") for line in path.read_text().splitlines()}
    lines |= {line.replace('"""', "").rstrip() for line in lines}  # a docstring printed without its quotes
    # cells that print source and nothing else: imports, then print(inspect.getsource(...)),
    # print(<module>.__doc__), or a slice of `source = inspect.getsource(...)`
    prints_only_source = re.compile(r"(import |from |#|print\(inspect\.|source = inspect\.getsource|print\(source\[)")
    stale, checked = [], 0
    for path in CHAPTERS:
        for cell in json.loads(path.read_text())["cells"]:
            statements = [line.strip() for line in "".join(cell["source"]).splitlines() if line.strip()]
            if cell["cell_type"] != "code" or not any("inspect.getsource(" in s or ".__doc__)" in s for s in statements):
                continue
            if not all(prints_only_source.match(s) for s in statements):
                continue
            checked += 1
            printed = "".join("".join(out.get("text", "")) for out in cell.get("outputs", []) if out.get("name") == "stdout")
            stale += [f"{path.name} cell {cell['id']}: {line.strip()!r}" for line in printed.splitlines()
                      if line.strip() and line.rstrip() not in lines]
    assert checked >= 20, f"only {checked} cells print library source: has the way chapters print it changed?"
    assert not stale, "re-execute these chapters (chapters/build.py): their printed source differs from the package's:\n" + "\n".join(stale[:20])
