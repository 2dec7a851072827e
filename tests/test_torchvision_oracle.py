"""Weights exchanged with the real PyTorch networks through safetensors files give the same
logits on both sides: torchvision's ResNet-18, 34 and 50, and a PyTorch copy (written here) of the
widely used port of the paper's CIFAR networks.

Skipped cleanly where torch, torchvision or safetensors is missing. Weights are random, batch
norm's statistics too (fresh ones are the identity, which would hide a mix-up of mean and
variance), and the networks run in evaluation mode on small inputs to keep this fast.
"""

import sys
import types

import numpy as np
import pytest

import tinyres
from tinyres.models import cifar_resnet, imagenet_resnet

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")


def import_torchvision():
    """torchvision, or a skip. On the project's machines torch==2.13.0 is a CPU build, and the
    torchvision==0.28.0 that pairs with it is a CUDA build whose C extension cannot load beside
    it. ``import torchvision`` then fails in ``torchvision._meta_registrations``, which registers
    fake (meta) kernels for that extension's operators (nms, roi_align, ...). The models are
    plain PyTorch and use none of those operators, so an empty module standing in for it lets
    the import finish; where torchvision imports normally, the stand-in is not needed and not
    installed."""
    try:
        import torchvision
    except ModuleNotFoundError:
        pytest.skip("torchvision is not installed")
    except RuntimeError:  # "operator torchvision::nms does not exist"
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]  # the half-imported package
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
        import torchvision
    return torchvision


def randomise_batch_norm(model, seed=0):
    """Random gamma, beta, running mean and variance in every BatchNorm2d (PyTorch side)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                for tensor, low, high in ((module.weight, 0.5, 1.5), (module.bias, -0.2, 0.2),
                                          (module.running_mean, -0.2, 0.2), (module.running_var, 0.5, 2.0)):
                    tensor.copy_(low + (high - low) * torch.rand(tensor.shape, generator=generator))
    return model


def randomise_tinyres_batch_norm(model, seed=0):
    """The same for a tinyres network, so the other direction also tests the statistics."""
    rng = np.random.default_rng(seed)
    for module in model.modules():
        if isinstance(module, tinyres.nn.BatchNorm2d):
            c = module.num_features
            module.weight.data[...] = rng.uniform(0.5, 1.5, c)
            module.bias.data[...] = rng.uniform(-0.2, 0.2, c)
            module.running_mean[...] = rng.uniform(-0.2, 0.2, c)
            module.running_var[...] = rng.uniform(0.5, 2.0, c)
    return model


def tinyres_logits(model, images):
    with tinyres.no_grad():
        return model.eval()(tinyres.Tensor(images, dtype=model.parameters()[0].dtype)).numpy()


def torch_logits(model, images, dtype):
    with torch.no_grad():
        return model.to(dtype).eval()(torch.tensor(images, dtype=dtype)).numpy()


def assert_same_logits(ours, theirs, float64):
    scale = np.abs(theirs).max()
    if float64:
        np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-8 * scale)
    else:
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * scale)


IMAGENET = [(18, "1x1"), (34, "1x1"), (50, "3x3")]  # ResNet-50: torchvision's bottleneck is v1.5


@pytest.mark.parametrize("depth,stride_on", IMAGENET, ids=["resnet18", "resnet34", "resnet50"])
def test_torchvision_weights_give_torchvisions_logits(tmp_path, depth, stride_on):
    torchvision = import_torchvision()
    torch.manual_seed(depth)
    theirs = randomise_batch_norm(getattr(torchvision.models, f"resnet{depth}")(weights=None), depth)
    path = str(tmp_path / f"resnet{depth}.safetensors")
    safetensors_torch.save_file(theirs.state_dict(), path)
    images = np.random.default_rng(depth).standard_normal((2, 3, 64, 64))
    ours = imagenet_resnet(depth, stride_on=stride_on).astype("float64")
    tinyres.load_safetensors(ours, path)  # float32 in the file: converted to the model's dtype
    assert_same_logits(tinyres_logits(ours, images), torch_logits(theirs, images, torch.float64), True)
    ours.astype("float32")  # exactly the file's numbers again
    assert_same_logits(tinyres_logits(ours, images), torch_logits(theirs, images, torch.float32), False)


@pytest.mark.parametrize("depth,stride_on", IMAGENET, ids=["resnet18", "resnet34", "resnet50"])
def test_tinyres_weights_load_strictly_into_torchvision_and_give_the_same_logits(tmp_path, depth, stride_on):
    torchvision = import_torchvision()
    tinyres.manual_seed(depth)
    ours = randomise_tinyres_batch_norm(imagenet_resnet(depth, stride_on=stride_on).astype("float64"), depth)
    path = str(tmp_path / f"resnet{depth}.safetensors")
    tinyres.save_safetensors(ours, path)
    theirs = getattr(torchvision.models, f"resnet{depth}")(weights=None).double()
    theirs.load_state_dict(safetensors_torch.load_file(path), strict=True)
    images = np.random.default_rng(depth).standard_normal((2, 3, 64, 64))
    assert_same_logits(tinyres_logits(ours, images), torch_logits(theirs, images, torch.float64), True)


def test_torchvisions_resnet50_weights_need_the_stride_on_the_3x3(tmp_path):
    """The paper's bottleneck has the same names and shapes, and computes something else."""
    torchvision = import_torchvision()
    torch.manual_seed(0)
    theirs = randomise_batch_norm(torchvision.models.resnet50(weights=None))
    path = str(tmp_path / "resnet50.safetensors")
    safetensors_torch.save_file(theirs.state_dict(), path)
    images = np.random.default_rng(0).standard_normal((2, 3, 64, 64))
    expected = torch_logits(theirs, images, torch.float64)
    paper_layout = imagenet_resnet(50, stride_on="1x1", weights=path).astype("float64")
    assert not np.allclose(tinyres_logits(paper_layout, images), expected, rtol=1e-3)


# ----- the CIFAR networks -----------------------------------------------------------------------
class PortBlock(torch.nn.Module):
    """A basic block named as in the widely used PyTorch port of the paper's CIFAR networks:
    conv1, bn1, conv2, bn2, and ``shortcut``, which for option A has no weights and puts half of
    the zero channels before the input's, half after; for option B it is Sequential(conv, bn)."""

    def __init__(self, in_channels, channels, stride, option):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(channels)
        self.conv2 = torch.nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(channels)
        self.changes_shape, self.stride = stride != 1 or in_channels != channels, stride
        self.zeros = (channels - in_channels) // 2
        self.shortcut = torch.nn.Sequential()
        if self.changes_shape and option == "B":
            self.shortcut = torch.nn.Sequential(torch.nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                                                torch.nn.BatchNorm2d(channels))

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        if self.changes_shape and len(self.shortcut) == 0:  # option A
            subsampled = x[:, :, :: self.stride, :: self.stride]
            shortcut = torch.nn.functional.pad(subsampled, (0, 0, 0, 0, self.zeros, self.zeros))
        else:
            shortcut = self.shortcut(x)
        return torch.relu(out + shortcut)


class PortResNet(torch.nn.Module):
    """conv1, bn1, layer1..layer3, linear: the port's names."""

    def __init__(self, depth, option="A"):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = torch.nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(16)
        widths = [(16, 16, 1), (16, 32, 2), (32, 64, 2)]
        for k, (in_channels, channels, stride) in enumerate(widths, start=1):
            blocks = [PortBlock(in_channels, channels, stride, option)]
            blocks += [PortBlock(channels, channels, 1, option) for _ in range(n - 1)]
            setattr(self, f"layer{k}", torch.nn.Sequential(*blocks))
        self.linear = torch.nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(x.mean(dim=(2, 3)))


CIFAR = [(20, "A"), (56, "A"), (20, "B")]


@pytest.mark.parametrize("depth,option", CIFAR, ids=["resnet20", "resnet56", "resnet20-B"])
def test_the_cifar_ports_weights_give_its_logits_and_back(tmp_path, depth, option):
    torch.manual_seed(depth)
    theirs = randomise_batch_norm(PortResNet(depth, option), depth)
    path = str(tmp_path / "port.safetensors")
    safetensors_torch.save_file(theirs.state_dict(), path)
    images = np.random.default_rng(depth).standard_normal((2, 3, 32, 32))
    ours = cifar_resnet(depth, shortcut=option, zero_channels="both").astype("float64")
    tinyres.load_safetensors(ours, path)
    assert_same_logits(tinyres_logits(ours, images), torch_logits(theirs, images, torch.float64), True)
    ours.astype("float32")
    assert_same_logits(tinyres_logits(ours, images), torch_logits(theirs, images, torch.float32), False)

    tinyres.manual_seed(depth)  # and the other way: tinyres's weights into the port
    ours = randomise_tinyres_batch_norm(cifar_resnet(depth, shortcut=option, zero_channels="both").astype("float64"))
    tinyres.save_safetensors(ours, path)
    other = PortResNet(depth, option).double()
    other.load_state_dict(safetensors_torch.load_file(path), strict=True)
    assert_same_logits(tinyres_logits(ours, images), torch_logits(other, images, torch.float64), True)


def test_the_cifar_ports_weights_need_zero_channels_on_both_sides(tmp_path):
    torch.manual_seed(0)
    theirs = randomise_batch_norm(PortResNet(20))
    path = str(tmp_path / "port.safetensors")
    safetensors_torch.save_file(theirs.state_dict(), path)
    images = np.random.default_rng(0).standard_normal((2, 3, 32, 32))
    appended = cifar_resnet(20, weights=path).astype("float64")  # tinyres's default, "end"
    assert not np.allclose(tinyres_logits(appended, images), torch_logits(theirs, images, torch.float64), rtol=1e-3)
