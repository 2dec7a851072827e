"""The README's tour runs as printed (its GPU lines only where CuPy has a GPU, its safetensors
examples only where safetensors is installed), in a temporary folder (the examples write files)."""

import importlib.util
import re
from pathlib import Path

import numpy as np

import tinyres

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_tour_runs(tmp_path, monkeypatch):
    try:
        tinyres.get_backend("cupy")
        gpu = True
    except tinyres.BackendUnavailable:
        gpu = False
    has_safetensors = importlib.util.find_spec("safetensors") is not None
    monkeypatch.chdir(tmp_path)
    np.random.seed(0)  # the README draws its example images with np.random, unseeded
    namespace, first_loss = {}, None
    for block in python_blocks():
        if "safetensors" in block and not has_safetensors:
            continue
        code = "\n".join(line for line in block.splitlines() if gpu or "cupy" not in line)
        exec(compile(code, str(README), "exec"), namespace)
        first_loss = first_loss if first_loss is not None else namespace["loss"].item()
    assert abs(first_loss - np.log(10)) < 0.5  # the tour's untrained 10-class net: near chance, as it prints
    assert namespace["net"][0].weight.grad.shape == (16, 3, 3, 3)
    if has_safetensors:  # fine-tuning: the head learns, the frozen network has no gradients
        assert namespace["losses"][-1] < namespace["losses"][0]
        assert all(p.grad is None for name, p in namespace["model"].named_parameters() if not name.startswith("fc."))


def test_readme_opens_with_the_install_and_test_commands():
    lines = README.read_text().splitlines()
    commands = [line for line in lines[:6] if line.startswith("python -m pip install")]
    assert len(commands) == 2 and "python -m pytest" in commands[1]
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands[1].split("#")[0].strip() in ci


def test_readme_resumes_the_folders_the_trainer_writes():
    # A user trains with the README's first command, then copies its resume and evaluate lines:
    # every runs/ folder those lines name must be one a README training command writes by default.
    from tinyres.train import parse_args, run_folder

    text = "".join(re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S))
    made = {
        run_folder(parse_args(line.split("python -m tinyres.train")[1].split("#")[0].split()))
        for line in text.splitlines()
        if "python -m tinyres.train --depth" in line and "--out" not in line
    }
    named = set(re.findall(r"(?:--resume|tinyres\.evaluate)\s*(runs/[\w.-]+)|--out (runs/[\w.-]+) --resume", text))
    named = {a or b for a, b in named}
    assert named, "the README shows no resume or evaluate line"
    assert named <= made, f"README names {sorted(named - made)}; the trainer writes {sorted(made)}"
