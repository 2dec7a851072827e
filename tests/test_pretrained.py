"""cifar_resnet(pretrained=True): weights exported from a finished run load into the same network
and reproduce its outputs; a damaged file, another network and an unfinished run are refused."""

import os
import subprocess
import sys

import numpy as np
import pytest

import tinyres
from tinyres import runs, train
from tinyres.evaluate import load_run
from tinyres.models import cifar_resnet, pretrained
from tinyres.models.shipped import SHIPPED, describe


@pytest.fixture
def finished_run(cifar_dir, tmp_path):
    run_dir = str(tmp_path / "run")
    train.main(["--depth", "8", "--batch-size", "8", "--iterations", "4", "--eval-every", "2",
                "--no-progress", "--data-dir", str(cifar_dir), "--out", run_dir])
    return run_dir


def test_a_run_on_part_of_the_data_is_not_exported(cifar_dir, tmp_path):
    # a shipped network's stated error is that of all 50,000 training and 10,000 test images
    for part in (["--subset", "48"], ["--test-subset", "10"], ["--validation", "24"]):
        run_dir = str(tmp_path / part[0].strip("-"))
        train.main(["--depth", "8", "--batch-size", "8", "--iterations", "2", "--eval-every", "2", "--no-progress",
                    "--data-dir", str(cifar_dir), "--out", run_dir] + part)
        with pytest.raises(ValueError, match="all 50,000 training images, measured on all 10,000 test images"):
            pretrained.export(run_dir, str(tmp_path / "weights"))
    assert not os.path.exists(tmp_path / "weights")


@pytest.fixture
def shipped(finished_run, tmp_path, monkeypatch):
    """The finished depth-8 run exported into a weights folder and listed in SHIPPED."""
    folder = str(tmp_path / "weights")
    depth, entry = pretrained.export(finished_run, folder)
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", folder)
    monkeypatch.setitem(SHIPPED, depth, entry)
    return finished_run, os.path.join(folder, entry.file), entry


def test_pretrained_network_computes_what_the_run_trained(shipped):
    run_dir, _, entry = shipped
    trained, _, meta, mean = load_run(run_dir)
    model = cifar_resnet(8, pretrained=True)
    x = np.random.default_rng(0).random((6, 3, 32, 32)).astype(np.float32) - mean
    with tinyres.no_grad():
        ours = model.eval()(tinyres.Tensor(x)).numpy()
        theirs = trained.eval()(tinyres.Tensor(x)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.pixel_mean, mean)
    assert entry.iterations == meta["iteration"] == 4 and entry.run == "run"


def test_shipped_entry_states_the_runs_last_test_error(shipped):
    run_dir, _, entry = shipped
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        last = f.read().splitlines()[-1].split(",")
    header = open(os.path.join(run_dir, "metrics.csv")).readline().strip().split(",")
    assert entry.test_error == pytest.approx(float(last[header.index("test_error")]))
    assert f"{entry.test_error:.2%} test error after 4 iterations" in describe()


def test_a_changed_file_fails_its_checksum_and_nothing_is_loaded(shipped):
    _, path, _ = shipped
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ValueError, match="is not the file that was shipped .*reinstall tinyres"):
        cifar_resnet(8, pretrained=True)


def test_depths_and_variants_without_shipped_weights_are_refused_with_what_is_shipped(shipped):
    with pytest.raises(ValueError, match=r"no weights are shipped for depth 14. Shipped: ResNet-8: "):
        cifar_resnet(14, pretrained=True)
    for kwargs in [{"plain": True}, {"shortcut": "B"}, {"num_classes": 100}, {"zero_channels": "both"}]:
        with pytest.raises(ValueError, match="the shipped weights are for ResNets with the defaults"):
            cifar_resnet(8, pretrained=True, **kwargs)
    with pytest.raises(ValueError, match="not both"):
        cifar_resnet(8, pretrained=True, weights="x.safetensors")


def test_the_command_writes_the_file_and_prints_its_entry(finished_run, tmp_path, capsys):
    folder = str(tmp_path / "weights")
    before = dict(SHIPPED)
    assert pretrained.main([finished_run, "--folder", folder]) == 0
    out = capsys.readouterr().out
    assert f"wrote {folder}/cifar10-resnet8.npz" in out and "    8: Shipped(file='cifar10-resnet8.npz', sha256='" in out
    assert pretrained.sha256(os.path.join(folder, "cifar10-resnet8.npz")) in out
    assert SHIPPED == before  # the command prints the entry; a person adds it


def test_the_command_replaces_a_file_only_when_told(finished_run, tmp_path, capsys):
    folder = tmp_path / "weights"
    assert pretrained.main([finished_run, "--folder", str(folder)]) == 0
    written = (folder / "cifar10-resnet8.npz").read_bytes()
    (folder / "cifar10-resnet8.npz").write_bytes(b"the file a user ships")
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        pretrained.main([finished_run, "--folder", str(folder)])
    assert stopped.value.code == 2
    assert "cifar10-resnet8.npz exists; nothing was written. Replace it with --replace" in capsys.readouterr().err
    assert (folder / "cifar10-resnet8.npz").read_bytes() == b"the file a user ships"
    assert pretrained.main([finished_run, "--folder", str(folder), "--replace"]) == 0
    assert (folder / "cifar10-resnet8.npz").read_bytes() == written


def test_the_command_runs_as_a_module_without_warnings():
    # importing tinyres.models must not import the module that python -m runs (runpy warns, and
    # with -W error fails, when it finds it in sys.modules already)
    result = subprocess.run([sys.executable, "-W", "error", "-m", "tinyres.models.pretrained", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: python -m tinyres.models.pretrained" in result.stdout


def test_only_a_finished_run_is_exported(cifar_dir, tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    train.main(["--depth", "8", "--batch-size", "8", "--iterations", "6", "--eval-every", "1",
                "--stop-after-minutes", "0", "--no-progress", "--data-dir", str(cifar_dir), "--out", run_dir])
    with pytest.raises(ValueError, match="is not finished"):
        pretrained.export(run_dir, str(tmp_path / "weights"))
    with pytest.raises(SystemExit) as stopped:
        pretrained.main([run_dir, "--folder", str(tmp_path / "weights")])
    assert stopped.value.code == 2
    assert "is not finished" in capsys.readouterr().err


def test_every_shipped_file_is_in_the_package_with_its_checksum():
    # what the package really ships
    for depth, entry in SHIPPED.items():
        path = os.path.join(pretrained.WEIGHTS_DIR, entry.file)
        assert pretrained.sha256(path) == entry.sha256, path
        assert cifar_resnet(depth, pretrained=True).pixel_mean.shape == (3, 32, 32)


def test_every_shipped_file_holds_its_runs_final_weights():
    # the shipped weights are the committed run's last checkpoint, unchanged, with its pixel mean,
    # and the stated test error and length are that run's
    results = os.path.join(os.path.dirname(__file__), "..", "results")
    for depth, entry in SHIPPED.items():
        run_dir = os.path.join(results, entry.run)
        if not os.path.isfile(os.path.join(run_dir, "checkpoint.npz")):
            pytest.skip(f"{run_dir} is not in this copy of the repository")
        trained, config, meta, mean = load_run(run_dir)
        model = cifar_resnet(depth, pretrained=True)
        assert (config["depth"], meta["iteration"]) == (depth, entry.iterations)
        ours, theirs = model.state_dict(), trained.state_dict()
        assert ours.keys() == theirs.keys()
        for name in ours:
            np.testing.assert_array_equal(ours[name], theirs[name].astype(np.float32), err_msg=name)
        np.testing.assert_array_equal(model.pixel_mean, np.asarray(mean, np.float32))
        logged = runs.load(run_dir).metrics
        assert entry.test_error == pytest.approx(logged["test_error"][-1]) and logged["iteration"][-1] == entry.iterations
