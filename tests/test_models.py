"""The paper's networks: CIFAR-10 ResNets (section 4.2, Table 6), the ImageNet family of Table 1
(parameters and multiply-adds), and ``summary``, which counts them."""

import numpy as np
import pytest

import tinyres
from tinyres import nn
from tinyres.models import cifar_resnet, imagenet_resnet, summary
from tinyres.models.blocks import Bottleneck, ZeroPadShortcut

QUIET = dict(print_fn=lambda *_: None)


def leaf_names(model):
    return [name for name, m in model.named_modules() if next(m.children(), None) is None]


# ----- CIFAR-10 --------------------------------------------------------------------------------
# Table 6: depth -> parameters in millions, as printed (the precision the paper gives).
CIFAR_PARAMS = {20: "0.27", 32: "0.46", 44: "0.66", 56: "0.85", 110: "1.7", 1202: "19.4"}


@pytest.mark.parametrize("depth", CIFAR_PARAMS)
def test_cifar_parameter_counts_match_table_6(depth):
    paper = CIFAR_PARAMS[depth]
    decimals = len(paper.split(".")[1])
    assert f"{cifar_resnet(depth).num_parameters() / 1e6:.{decimals}f}" == paper


@pytest.mark.parametrize("depth", [21, 0, 2, 7, "20", 20.0])
def test_cifar_resnet_rejects_depths_that_are_not_6n_plus_2(depth):
    with pytest.raises(ValueError, match=r"6n \+ 2"):
        cifar_resnet(depth)


def test_plain_nets_have_as_many_parameters_as_option_a_resnets():
    # option A pads with zeros: a shortcut that adds no parameters
    assert cifar_resnet(20, plain=True).num_parameters() == cifar_resnet(20, shortcut="A").num_parameters()


def test_projection_shortcuts_add_parameters_c_more_than_b():
    a, b, c = (cifar_resnet(20, shortcut=option).num_parameters() for option in "ABC")
    assert a < b < c


CIFAR_VARIANTS = [dict(plain=True), dict(shortcut="A"), dict(shortcut="B"), dict(shortcut="C")]
VARIANT_IDS = ["plain", "A", "B", "C"]


@pytest.mark.parametrize("kwargs", CIFAR_VARIANTS, ids=VARIANT_IDS)
def test_cifar_forward_maps_images_to_ten_logits(kwargs):
    x = tinyres.Tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)))
    assert cifar_resnet(20, **kwargs)(x).shape == (2, 10)


@pytest.mark.parametrize("kwargs", CIFAR_VARIANTS, ids=VARIANT_IDS)
def test_cifar_backward_gives_every_parameter_a_finite_gradient(kwargs):
    model = cifar_resnet(20, **kwargs)
    x = tinyres.Tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)))
    nn.functional.cross_entropy(model(x), np.array([3, 7])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert p.grad.shape == p.shape and np.all(np.isfinite(p.grad)), name


# ----- ImageNet (Table 1) ----------------------------------------------------------------------
# depth -> (parameters, multiply-adds at 1x3x224x224), as in Table 1 and the paper's released
# models; the paper rounds, so allow 2%.
IMAGENET = {
    18: (11.7e6, 1.8e9),
    34: (21.8e6, 3.6e9),
    50: (25.6e6, 3.8e9),
    101: (44.5e6, 7.6e9),
    152: (60.2e6, 11.3e9),
}


@pytest.mark.parametrize("depth", IMAGENET)
def test_imagenet_parameter_counts_match_the_paper(depth):
    assert imagenet_resnet(depth).num_parameters() == pytest.approx(IMAGENET[depth][0], rel=0.02)


@pytest.mark.parametrize("depth", IMAGENET)
def test_imagenet_multiply_adds_match_table_1(depth):
    result = summary(imagenet_resnet(depth), (1, 3, 224, 224), **QUIET)
    assert result.total_macs == pytest.approx(IMAGENET[depth][1], rel=0.02)


def test_bottleneck_subsamples_in_its_first_1x1_convolution():
    # as in the paper's models; with the stride on the 3x3 (torchvision's "v1.5") ResNet-50
    # costs 4.1G multiply-adds instead of Table 1's 3.8G
    block = Bottleneck(64, 32, stride=2)
    rows = {row.name: row for row in summary(block, (1, 64, 8, 8), **QUIET).rows}
    assert rows["conv1"].output_shape == (1, 32, 4, 4)
    assert rows["conv2"].output_shape == (1, 32, 4, 4)


def test_torchvisions_bottleneck_subsamples_in_its_3x3_convolution_and_costs_more():
    block = Bottleneck(64, 32, stride=2, stride_on="3x3")
    rows = {row.name: row for row in summary(block, (1, 64, 8, 8), **QUIET).rows}
    assert rows["conv1"].output_shape == (1, 32, 8, 8)
    assert rows["conv2"].output_shape == (1, 32, 4, 4)
    v1_5 = summary(imagenet_resnet(50, stride_on="3x3"), (1, 3, 224, 224), **QUIET)
    assert v1_5.total_macs == pytest.approx(4.1e9, rel=0.01)
    assert v1_5.total_params == imagenet_resnet(50).num_parameters()
    with pytest.raises(ValueError, match="stride_on must be '1x1'.*or '3x3'"):
        imagenet_resnet(50, stride_on="first")


def test_option_a_puts_the_zero_channels_after_the_input_or_on_both_sides():
    x = tinyres.Tensor(np.arange(1, 1 + 2 * 4 * 4, dtype=np.float64).reshape(1, 2, 4, 4), dtype="float64")
    end = ZeroPadShortcut(2, 6, 2)(x).numpy()
    both = ZeroPadShortcut(2, 6, 2, zero_channels="both")(x).numpy()
    subsampled = x.numpy()[:, :, ::2, ::2]
    np.testing.assert_array_equal(end[:, :2], subsampled)
    np.testing.assert_array_equal(both[:, 2:4], subsampled)
    assert not end[:, 2:].any() and not both[:, :2].any() and not both[:, 4:].any()
    with pytest.raises(ValueError, match="zero_channels must be 'end'"):
        cifar_resnet(20, zero_channels="middle")


@pytest.mark.parametrize("plain", [False, True], ids=["resnet", "plain"])
@pytest.mark.parametrize("depth", [18, 50])
def test_imagenet_forward_maps_images_to_class_logits(depth, plain):
    x = tinyres.Tensor(np.random.default_rng(0).standard_normal((2, 3, 64, 64)))
    assert imagenet_resnet(depth, plain=plain, num_classes=7)(x).shape == (2, 7)


def test_plain_imagenet_nets_lack_only_the_projection_shortcuts():
    plain, residual = imagenet_resnet(34, plain=True), imagenet_resnet(34)
    projections = sum(
        m.num_parameters() for name, m in residual.named_modules() if name.endswith(".shortcut")
    )
    assert projections > 0
    assert plain.num_parameters() == residual.num_parameters() - projections


@pytest.mark.parametrize("depth", [0, 20, 200, 1202, "50", 50.0])
def test_imagenet_resnet_rejects_unknown_depths_listing_the_valid_ones(depth):
    with pytest.raises(ValueError, match="18, 34, 50, 101, 152"):
        imagenet_resnet(depth)


# ----- summary ---------------------------------------------------------------------------------
def test_summary_prints_a_header_one_row_per_leaf_layer_and_the_totals():
    model = cifar_resnet(8, shortcut="B")
    lines = []
    result = summary(model, (1, 3, 32, 32), print_fn=lines.append)
    names = leaf_names(model)
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["Layer", "Type"])
    assert all(word in lines[header] for word in ("Output shape", "Params", "Mult-adds"))
    rows = [line for line in lines if line.split() and line.split()[0] in names]
    assert [row.split()[0] for row in rows] == names == [row.name for row in result.rows]
    assert f"{result.total_params:,}" in lines[-2] and "parameters" in lines[-2].lower()
    assert f"{result.total_macs:,}" in lines[-1] and "multiply-adds" in lines[-1].lower()


def test_summary_total_parameters_equal_num_parameters():
    model = imagenet_resnet(18)
    result = summary(model, (1, 3, 64, 64), **QUIET)
    assert result.total_params == model.num_parameters() == sum(row.params for row in result.rows)


def test_summary_counts_multiply_adds_of_convolutions_and_fully_connected_layers_only():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 5)
    )
    result = summary(model, (2, 3, 8, 8), **QUIET)
    conv = 2 * 4 * 4 * 4 * (3 * 3 * 3)  # batch * out_h * out_w * out_channels * (in_channels * kh * kw)
    linear = 2 * 64 * 5  # batch * in_features * out_features
    assert [row.macs for row in result.rows] == [conv, 0, 0, 0, linear]
    assert [row.output_shape for row in result.rows] == [(2, 4, 4, 4)] * 3 + [(2, 64), (2, 5)]
    assert result.total_macs == conv + linear


@pytest.mark.parametrize("training", [True, False])
def test_summary_leaves_the_model_in_its_mode_with_its_own_forwards(training):
    model = cifar_resnet(8).train(training)
    summary(model, (1, 3, 32, 32), **QUIET)
    assert all(m.training == training for m in model.modules())
    assert not any("forward" in vars(m) for m in model.modules())


def test_summary_restores_the_model_when_the_forward_pass_fails():
    model = cifar_resnet(8)
    with pytest.raises(ValueError, match=r"conv2d: input has 4 channels .* expects 3"):
        summary(model, (1, 4, 32, 32), **QUIET)  # 4 channels where the net expects 3
    assert all(m.training for m in model.modules())
    assert not any("forward" in vars(m) for m in model.modules())


def test_summary_does_not_update_batch_norm_running_statistics():
    model = cifar_resnet(8)
    before = model.state_dict()
    summary(model, (2, 3, 32, 32), **QUIET)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def test_summary_runs_on_the_backend_of_the_models_parameters(backend):
    model = cifar_resnet(8).to(backend)
    result = summary(model, (1, 3, 32, 32), **QUIET)
    assert result.rows[-1].output_shape == (1, 10)


def test_state_dict_keys_and_shapes_are_those_of_saved_checkpoints():
    """Recorded from the code that wrote the checkpoints in results/: renaming a stage or a
    block's attribute would make them unloadable."""
    import json
    from pathlib import Path

    recorded = json.loads((Path(__file__).parent / "state_dict_keys.json").read_text())
    models = {"cifar_resnet(20)": lambda: cifar_resnet(20), "cifar_resnet(20, shortcut='C')": lambda: cifar_resnet(20, shortcut="C"),
              "imagenet_resnet(18)": lambda: imagenet_resnet(18), "imagenet_resnet(50)": lambda: imagenet_resnet(50)}
    for name, make in models.items():
        state = make().state_dict()
        assert [[key, list(value.shape)] for key, value in state.items()] == [list(kv) for kv in recorded[name].items()], name


@pytest.mark.parametrize("plain", [False, True])
def test_a_shortcut_option_or_layout_that_does_not_exist_is_refused_also_for_plain_nets(plain):
    # a plain net builds no shortcut, but a run records its settings: a typo must not pass silently
    with pytest.raises(ValueError, match="shortcut option must be 'A', 'B' or 'C'"):
        cifar_resnet(8, plain=plain, shortcut="D")
    with pytest.raises(ValueError, match="zero_channels must be 'end'"):
        cifar_resnet(8, plain=plain, zero_channels="middle")
    with pytest.raises(ValueError, match="shortcut option must be 'A', 'B' or 'C'"):
        imagenet_resnet(18, plain=plain, shortcut="a")
