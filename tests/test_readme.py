"""The README's tour runs as printed (its GPU lines only where CuPy has a GPU)."""

import re
from pathlib import Path

import pytest

import tinyres

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_tour_runs():
    try:
        tinyres.get_backend("cupy")
        gpu = True
    except tinyres.BackendUnavailable:
        gpu = False
    namespace = {}
    for block in python_blocks():
        code = "\n".join(line for line in block.splitlines() if gpu or "cupy" not in line)
        exec(compile(code, str(README), "exec"), namespace)
    assert namespace["loss"].item() > 0
    assert namespace["net"][0].weight.grad.shape == (16, 3, 3, 3)


def test_readme_opens_with_the_install_and_test_commands():
    lines = README.read_text().splitlines()
    commands = [line for line in lines[:6] if line.startswith("pip install")]
    assert len(commands) == 2 and "python -m pytest" in commands[1]
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands[1].split("#")[0].strip() in ci
