"""safetensors files in PyTorch's names: what is written, what is refused, and that a refused
load leaves the model as it was. (Against the real torchvision: test_torchvision_oracle.py.)"""

import numpy as np
import pytest

import tinyres
from tinyres.interchange import pytorch_names, pytorch_state_dict
from tinyres.models import cifar_resnet, imagenet_resnet
from tinyres.nn.module import StateDictError

safetensors_numpy = pytest.importorskip("safetensors.numpy")


def logits(model, seed=0, size=32):
    images = np.random.default_rng(seed).standard_normal((2, 3, size, size))
    with tinyres.no_grad():
        return model.eval()(tinyres.Tensor(images, dtype=model.parameters()[0].dtype)).numpy()


def assert_unchanged(model, before):
    after = model.state_dict()
    assert list(after) == list(before)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


# ----- names --------------------------------------------------------------------------------
def test_imagenet_names_are_torchvisions():
    names = set(pytorch_state_dict(imagenet_resnet(50)))
    for name in ("conv1.weight", "bn1.running_mean", "bn1.num_batches_tracked", "layer1.0.conv3.weight",
                 "layer1.0.downsample.0.weight", "layer1.0.downsample.1.running_var", "layer4.2.bn3.bias",
                 "fc.weight", "fc.bias"):
        assert name in names, name
    assert not any("stage" in n or "shortcut" in n for n in names)


def test_cifar_names_are_those_of_the_pytorch_port_and_option_a_has_no_weights():
    a = set(pytorch_state_dict(cifar_resnet(20)))
    assert {"conv1.weight", "bn1.bias", "layer1.0.conv1.weight", "layer3.2.bn2.running_var", "linear.weight"} <= a
    assert not any("shortcut" in n or n.startswith(("stage", "fc.")) for n in a)
    b = set(pytorch_state_dict(cifar_resnet(20, shortcut="B")))
    assert b - a == {f"layer{k}.0.shortcut.{part}" for k in (2, 3) for part in
                     ("0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked")}


@pytest.mark.parametrize("make", [lambda: cifar_resnet(20, shortcut="C"), lambda: imagenet_resnet(50, shortcut="C")],
                         ids=["cifar-C", "imagenet-C"])
def test_the_name_mapping_is_one_to_one_and_keeps_the_models_own_names(make):
    model = make()
    names = pytorch_names(model)
    assert list(names) == list(model.state_dict())  # the model's names (run checkpoints use them) stay
    assert len(set(names.values())) == len(names)


def test_a_file_holds_float_arrays_batch_counters_and_the_layout(tmp_path):
    path = str(tmp_path / "r50.safetensors")
    tinyres.save_safetensors(imagenet_resnet(50, stride_on="3x3"), path)
    state = safetensors_numpy.load_file(path)
    assert state["layer2.0.bn1.num_batches_tracked"].dtype == np.int64
    assert state["layer2.0.bn1.num_batches_tracked"].shape == ()
    assert all(v.dtype == np.float32 for k, v in state.items() if not k.endswith("num_batches_tracked"))
    from safetensors import safe_open

    with safe_open(path, framework="np") as f:
        assert f.metadata()["tinyres.stride_on"] == "3x3"


# ----- round trips ------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda **k: cifar_resnet(8, shortcut="B", **k), lambda **k: imagenet_resnet(18, **k)],
                         ids=["cifar", "imagenet"])
def test_save_then_load_gives_the_same_weights_and_logits(tmp_path, make):
    tinyres.manual_seed(0)
    model = make()
    model(tinyres.Tensor(np.random.default_rng(1).standard_normal((4, 3, 32, 32))))  # running statistics move
    path = str(tmp_path / "model.safetensors")
    tinyres.save_safetensors(model, path)
    tinyres.manual_seed(1)
    loaded = make(weights=path)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], value, err_msg=name)
    np.testing.assert_array_equal(logits(loaded), logits(model))


def test_floating_dtypes_are_converted_to_the_models(tmp_path):
    model = cifar_resnet(8)
    state = {k: v.astype(np.float64) for k, v in pytorch_state_dict(model).items() if v.dtype.kind == "f"}
    state["linear.bias"] = state["linear.bias"].astype(np.float16)
    path = str(tmp_path / "f64.safetensors")
    safetensors_numpy.save_file(state, path)  # no batch counters either: PyTorch does not need them
    loaded = cifar_resnet(8)
    assert tinyres.load_safetensors(loaded, path) == ([], [])  # (missing_keys, unexpected_keys)
    assert all(p.dtype == np.float32 for p in loaded.parameters())
    np.testing.assert_array_equal(loaded.conv1.weight.numpy(), model.conv1.weight.numpy())


# ----- refusals -----------------------------------------------------------------------------
def damaged(state):
    """name -> (a state with one thing wrong, the words the error must contain)."""
    wrong_shape = dict(state, **{"layer2.0.conv1.weight": np.zeros((32, 16, 1, 1), np.float32)})
    missing = {k: v for k, v in state.items() if k != "bn1.running_var"}
    extra = dict(state, **{"layer4.0.conv1.weight": np.zeros((1,), np.float32)})
    integer = dict(state, **{"linear.weight": state["linear.weight"].astype(np.int32)})
    return {
        "wrong shape": (wrong_shape, r"layer2\.0\.conv1\.weight has shape \(32, 16, 1, 1\), the module expects \(32, 16, 3, 3\)"),
        "missing": (missing, r"missing \['bn1\.running_var'\]"),
        "extra": (extra, r"unexpected \['layer4\.0\.conv1\.weight'\]"),
        "not float": (integer, r"linear\.weight has dtype int32, not a floating-point one"),
    }


@pytest.mark.parametrize("case", ["wrong shape", "missing", "extra", "not float"])
def test_a_file_that_does_not_fit_is_refused_naming_the_key_and_nothing_is_loaded(tmp_path, case):
    tinyres.manual_seed(0)
    state = pytorch_state_dict(cifar_resnet(8))
    for name in state:  # values unlike any fresh model's, so a partial load would show
        if state[name].dtype.kind == "f":
            state[name] = state[name] + 1
    bad, message = damaged(state)[case]
    path = str(tmp_path / "bad.safetensors")
    safetensors_numpy.save_file(bad, path)
    model = cifar_resnet(8)
    before = model.state_dict()
    with pytest.raises(StateDictError, match=message) as error:
        tinyres.load_safetensors(model, path)
    assert "nothing was loaded" in str(error.value) and path in str(error.value)
    assert_unchanged(model, before)


def test_every_problem_is_listed_at_once(tmp_path):
    state = pytorch_state_dict(cifar_resnet(8))
    del state["conv1.weight"]
    state["linear.bias"] = np.zeros(3, np.float32)
    state["extra"] = np.zeros(1, np.float32)
    path = str(tmp_path / "bad.safetensors")
    safetensors_numpy.save_file(state, path)
    with pytest.raises(StateDictError, match=r"missing \['conv1.weight'\]; unexpected \['extra'\]; linear.bias has shape"):
        tinyres.load_safetensors(cifar_resnet(8), path)


def test_strict_false_skips_missing_and_unexpected_names_and_says_which(tmp_path):
    tinyres.manual_seed(0)
    state = pytorch_state_dict(cifar_resnet(8))
    del state["linear.weight"], state["linear.bias"]
    state["head.weight"] = np.zeros((3, 64), np.float32)
    path = str(tmp_path / "backbone.safetensors")
    safetensors_numpy.save_file(state, path)
    model = cifar_resnet(8)
    head = model.fc.weight.numpy()
    result = tinyres.load_safetensors(model, path, strict=False)
    assert result.missing_keys == ["linear.weight", "linear.bias"] and result.unexpected_keys == ["head.weight"]
    np.testing.assert_array_equal(model.fc.weight.numpy(), head)
    np.testing.assert_array_equal(model.conv1.weight.numpy(), state["conv1.weight"])


@pytest.mark.parametrize("saved,loading,option", [
    (lambda: imagenet_resnet(50, stride_on="3x3"), lambda: imagenet_resnet(50), "stride_on"),
    (lambda: cifar_resnet(8, zero_channels="both"), lambda: cifar_resnet(8), "zero_channels"),
    (lambda: cifar_resnet(8), lambda: cifar_resnet(8, plain=True), "plain"),  # option A: the same names
    (lambda: cifar_resnet(8, plain=True), lambda: cifar_resnet(8), "plain"),
], ids=["stride_on", "zero_channels", "residual-into-plain", "plain-into-residual"])
def test_a_file_of_the_other_layout_is_refused(tmp_path, saved, loading, option):
    path = str(tmp_path / "model.safetensors")
    tinyres.save_safetensors(saved(), path)
    model = loading()
    before = model.state_dict()
    with pytest.raises(StateDictError, match=f"{option}=.* this one has {option}="):
        tinyres.load_safetensors(model, path)
    assert_unchanged(model, before)


def test_a_file_of_another_depth_is_refused_for_its_names_before_its_layout(tmp_path):
    # ResNet-20's file into a plain-56: the layout differs too, but "build it with plain=False"
    # would lead to a second error; the names are what is wrong first
    path = str(tmp_path / "model.safetensors")
    tinyres.save_safetensors(cifar_resnet(20), path)
    model = cifar_resnet(56, plain=True)
    before = model.state_dict()
    with pytest.raises(StateDictError, match=r"does not fit CifarResNet.*missing \[") as raised:
        tinyres.load_safetensors(model, path)
    assert "plain=" not in str(raised.value)
    assert_unchanged(model, before)


def test_a_file_that_is_not_safetensors_is_a_clear_error(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"\x80\x02}q\x00(X\x06\x00\x00\x00conv1.q\x01" * 4)  # pickle-like bytes
    with pytest.raises(ValueError, match=r"model\.pth is not a safetensors file .*weights_only=True"):
        tinyres.load_safetensors(cifar_resnet(8), str(path))
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors does not exist"):
        tinyres.load_safetensors(cifar_resnet(8), str(tmp_path / "nowhere.safetensors"))
    with pytest.raises(IsADirectoryError, match="is a folder; give the .safetensors file in it"):
        tinyres.load_safetensors(cifar_resnet(8), str(tmp_path))
    tinyres.save(cifar_resnet(8).state_dict(), str(tmp_path / "weights.npz"))
    with pytest.raises(ValueError, match=r"weights\.npz is an \.npz file.*model\.load_state_dict\(tinyres\.load\(path\)\)"):
        cifar_resnet(8, weights=str(tmp_path / "weights.npz"))


def test_without_safetensors_the_error_says_what_to_install(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install safetensors, or pip install 'tinyres\[interchange\]'"):
        tinyres.save_safetensors(cifar_resnet(8), str(tmp_path / "m.safetensors"))
