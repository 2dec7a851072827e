"""What a PyTorch user writes works here, written as they would write it: freezing, a new head,
parameter groups, learning-rate schedulers, saving weights, ``apply``, ``buffers``,
``load_state_dict(strict=False)``, an op of one's own with its test, and the messages for two
common slips."""

import numpy as np
import pytest

import tinyres
import tinyres.nn.functional as F
from tinyres import Tensor, nn
from tinyres.models import cifar_resnet
from tinyres.optim import SGD, MultiStepLR, WarmupUntilError
from tinyres.testing import GradcheckError, check_op


def batch(seed=0, n=4):
    rng = np.random.default_rng(seed)
    return tinyres.Tensor(rng.standard_normal((n, 3, 32, 32))), rng.integers(0, 10, n)


def train_steps(model, optimizer, steps=2, scheduler=None):
    for step in range(steps):
        images, labels = batch(step)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


# ----- freezing and fine-tuning ---------------------------------------------------------------
def test_a_frozen_parameter_gets_no_gradient_and_no_update_momentum_and_weight_decay_included():
    tinyres.manual_seed(0)
    model = cifar_resnet(8)
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    train_steps(model, optimizer, 1)  # now every parameter has a velocity
    model.stage1.requires_grad_(False)
    frozen = {name: p.numpy() for name, p in model.named_parameters() if name.startswith("stage1.")}
    train_steps(model, optimizer, 2)
    for name, p in model.named_parameters():
        if name in frozen:
            assert p.grad is None, name
            np.testing.assert_array_equal(p.numpy(), frozen[name], err_msg=name)
        else:
            assert p.grad is not None, name


def test_a_parameter_frozen_after_backward_is_not_updated_by_its_stale_gradient():
    tinyres.manual_seed(0)
    layer = nn.Linear(3, 2)
    optimizer = SGD(layer.parameters(), lr=0.1)
    layer(tinyres.Tensor(np.ones((1, 3)))).sum().backward()
    before = layer.weight.numpy()
    layer.weight.requires_grad_(False)
    optimizer.step()
    np.testing.assert_array_equal(layer.weight.numpy(), before)


def test_fine_tuning_a_new_head_trains_only_the_head():
    tinyres.manual_seed(0)
    model = cifar_resnet(8)
    model.requires_grad_(False)
    model.fc = nn.Linear(64, 3)  # a new head, trainable
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable == [model.fc.weight, model.fc.bias]
    before = model.state_dict()
    model.eval()
    optimizer = SGD(trainable, lr=0.1, momentum=0.9)
    for step in range(3):
        images, labels = batch(step)
        loss = F.cross_entropy(model(images), labels % 3)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = model.state_dict()
    changed = [name for name in after if not np.array_equal(after[name], before[name])]
    assert changed == ["fc.weight", "fc.bias"]


def test_requires_grad_on_a_tensor_returns_it_and_refuses_non_leaves_and_integers():
    x = tinyres.Tensor(np.ones(3))
    assert x.requires_grad_() is x and x.requires_grad
    with pytest.raises(RuntimeError, match="computed by mul.*set it on a leaf"):
        (x * 2).requires_grad_(False)
    with pytest.raises(TypeError, match="only float32/float64"):
        tinyres.Tensor(np.arange(3)).requires_grad_()


# ----- parameter groups -------------------------------------------------------------------------
def test_parameter_groups_without_weight_decay_for_batch_norm_and_biases():
    tinyres.manual_seed(0)
    model = cifar_resnet(8)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim == 1]
    optimizer = SGD([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=0.1, weight_decay=0.5)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.5, 0.0]
    images, labels = batch()
    F.cross_entropy(model(images), labels).backward()
    expected = [p.data - 0.1 * (p.grad + 0.5 * p.data) for p in decay] + [p.data - 0.1 * p.grad for p in no_decay]
    optimizer.step()
    for p, e in zip(decay + no_decay, expected):
        np.testing.assert_allclose(p.numpy(), e, rtol=1e-6, atol=1e-7)


def test_changing_a_groups_learning_rate_changes_its_step():
    layer = nn.Linear(2, 1)
    optimizer = SGD(layer.parameters(), lr=0.1)
    optimizer.param_groups[0]["lr"] = 0.5
    layer(tinyres.Tensor(np.ones((1, 2)))).sum().backward()
    before = layer.bias.numpy()
    optimizer.step()
    np.testing.assert_allclose(layer.bias.numpy(), before - 0.5 * 1.0)
    assert optimizer.lr == 0.5


def test_groups_keep_the_velocity_indexing_of_one_group_so_old_checkpoints_load():
    tinyres.manual_seed(0)
    model = cifar_resnet(8)
    one = SGD(model.parameters(), lr=0.1, momentum=0.9)
    train_steps(model, one, 1)
    saved = one.state_dict()
    assert list(saved) == [f"velocity.{i}" for i in range(len(model.parameters()))]
    params = model.parameters()
    two = SGD([{"params": params[:5]}, {"params": params[5:], "lr": 0.01}], lr=0.1, momentum=0.9)
    two.load_state_dict(saved)
    for i, p in enumerate(params):
        np.testing.assert_array_equal(two.state_dict()[f"velocity.{i}"], saved[f"velocity.{i}"])
        assert two.parameters[i] is p


def test_mistakes_in_groups_are_named():
    layer = nn.Linear(2, 1)
    with pytest.raises(ValueError, match=r"unknown settings \['nesterov'\]"):
        SGD([{"params": layer.parameters(), "nesterov": True}], lr=0.1)
    with pytest.raises(ValueError, match="parameter 2 appears twice"):
        SGD([{"params": layer.parameters()}, {"params": [layer.weight]}], lr=0.1)
    with pytest.raises(ValueError, match="no learning rate"):
        SGD([{"params": layer.parameters()}])
    with pytest.raises(TypeError, match=r"SGD\(model.parameters\(\), ...\), not the model"):
        SGD(layer, lr=0.1)
    with pytest.raises(AttributeError, match="different values"):
        SGD([{"params": [layer.weight]}, {"params": [layer.bias], "lr": 0.2}], lr=0.1).lr


def test_sgd_with_groups_and_a_frozen_parameter_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w, b, frozen = rng.standard_normal((3, 4)), rng.standard_normal(3), rng.standard_normal((3, 4))
    ours = [tinyres.Tensor(a, requires_grad=True, dtype="float64") for a in (w, b, frozen)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (w, b, frozen)]
    ours[2].requires_grad_(False)
    theirs[2].requires_grad_(False)
    groups = lambda p: [{"params": [p[0], p[2]]}, {"params": [p[1]], "weight_decay": 0.0, "lr": 0.05}]  # noqa: E731
    our_opt = SGD(groups(ours), lr=0.1, momentum=0.9, weight_decay=1e-2)
    their_opt = torch.optim.SGD(groups(theirs), lr=0.1, momentum=0.9, weight_decay=1e-2)
    for step in range(3):
        x = rng.standard_normal((5, 4))
        our_opt.zero_grad()
        (((tinyres.Tensor(x, dtype="float64") @ (ours[0] + ours[2]).T + ours[1]) ** 2).sum()).backward()
        our_opt.step()
        their_opt.zero_grad()
        (((torch.tensor(x) @ (theirs[0] + theirs[2]).T + theirs[1]) ** 2).sum()).backward()
        their_opt.step()
    for a, t in zip(ours, theirs):
        np.testing.assert_allclose(a.numpy(), t.detach().numpy(), rtol=1e-12, atol=1e-12)


# ----- learning-rate schedulers --------------------------------------------------------------
def test_multistep_lr_divides_at_each_milestone_as_pytorchs_does():
    optimizer = SGD(nn.Linear(2, 1).parameters(), lr=0.1)
    scheduler = MultiStepLR(optimizer, milestones=[3, 5], gamma=0.1)
    rates = []
    for _ in range(7):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert scheduler.get_last_lr() == [optimizer.lr]
    torch = pytest.importorskip("torch")
    param = torch.zeros(1, requires_grad=True)
    their_opt = torch.optim.SGD([param], lr=0.1)
    theirs = torch.optim.lr_scheduler.MultiStepLR(their_opt, milestones=[3, 5], gamma=0.1)
    their_rates = []
    for _ in range(7):
        their_rates.append(their_opt.param_groups[0]["lr"])
        their_opt.step()
        theirs.step()
    assert rates == pytest.approx(their_rates, rel=1e-12)


def papers_rate(base_lr, iteration, milestones, warming_up):
    """Section 4.2 written out: base_lr / 10 per milestone passed, / 10 more while warming up."""
    rate = base_lr * 0.1 ** sum(iteration >= m for m in milestones)
    return rate * 0.1 if warming_up else rate


@pytest.mark.parametrize("warmup", [False, True])
def test_the_schedulers_give_the_papers_rates_exactly(warmup):
    base_lr, milestones = 0.1, [150, 220]
    optimizer = SGD(nn.Linear(2, 1).parameters(), lr=base_lr, momentum=0.9)
    scheduler = MultiStepLR(optimizer, milestones, gamma=0.1)
    if warmup:
        scheduler = WarmupUntilError(scheduler, factor=0.1, error=0.8, window=50)
    errors = np.concatenate([np.full(60, 0.9), np.linspace(0.9, 0.5, 60), np.full(180, 0.4)])
    warming_up, ended_at = warmup, None
    for iteration, error in enumerate(errors):
        assert optimizer.lr == papers_rate(base_lr, iteration, milestones, warming_up), iteration
        optimizer.step()
        scheduler.step(error) if warmup else scheduler.step()
        recent = errors[max(0, iteration - 49): iteration + 1]
        if warming_up and len(recent) == 50 and recent.mean() < 0.8:  # the mean of the last 50 batches
            warming_up, ended_at = False, iteration + 1
    assert not warming_up and (ended_at is not None) == warmup


def test_a_scheduler_resumes_from_its_state_dict():
    import json

    def fresh():
        optimizer = SGD(nn.Linear(2, 1).parameters(), lr=0.1)
        return optimizer, WarmupUntilError(MultiStepLR(optimizer, [8, 12]), window=3)

    optimizer, scheduler = fresh()
    for error in [0.9, 0.7, 0.6, 0.5, 0.5]:
        scheduler.step(error)
    state = json.loads(json.dumps(scheduler.state_dict()))  # plain values: fits a checkpoint's header
    resumed_optimizer, resumed = fresh()
    resumed.load_state_dict(state)
    assert resumed_optimizer.lr == optimizer.lr and resumed.last_epoch == scheduler.last_epoch == 5
    for error in [0.4] * 10:
        scheduler.step(error)
        resumed.step(error)
        assert resumed.get_last_lr() == scheduler.get_last_lr()


# ----- state ------------------------------------------------------------------------------------
def test_save_and_load_a_models_weights(tmp_path):
    tinyres.manual_seed(0)
    model = cifar_resnet(8)
    path = tmp_path / "weights.npz"
    tinyres.save(model.state_dict(), path)
    tinyres.manual_seed(1)
    other = cifar_resnet(8)
    other.load_state_dict(tinyres.load(path))
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[name], value, err_msg=name)
    with pytest.raises(TypeError, match=r"tinyres.save\(model.state_dict\(\), path\)"):
        tinyres.save(model, tmp_path / "model.npz")


def test_load_state_dict_strict_false_loads_what_fits_and_reports_the_rest():
    tinyres.manual_seed(0)
    pretrained = cifar_resnet(8).state_dict()
    model = cifar_resnet(8, num_classes=3)
    head = model.fc.weight.numpy()
    state = {k: v for k, v in pretrained.items() if not k.startswith("fc.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert missing == ["fc.weight", "fc.bias"] and unexpected == []
    np.testing.assert_array_equal(model.conv1.weight.numpy(), pretrained["conv1.weight"])
    np.testing.assert_array_equal(model.fc.weight.numpy(), head)
    with pytest.raises(ValueError, match="fc.weight has shape"):  # a wrong shape is never skipped
        model.load_state_dict(pretrained, strict=False)


def test_apply_visits_every_module_once_children_first():
    shared = nn.Linear(2, 2)
    model = nn.Sequential(nn.Sequential(shared, nn.ReLU()), shared)
    seen = []
    assert model.apply(seen.append) is model
    assert seen == [shared, model[0][1], model[0], model]

    def set_linear_biases(module):  # an initialisation of one's own
        if isinstance(module, nn.Linear):
            module.bias.data[...] = 0.5

    net = cifar_resnet(8).apply(set_linear_biases)
    assert np.all(net.fc.bias.numpy() == 0.5)


def test_buffers_are_the_batch_norm_statistics():
    model = cifar_resnet(8)
    assert len(model.buffers()) == 2 * sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model.buffers()[0] is model.bn1.running_mean


# ----- an op of one's own -----------------------------------------------------------------------
def leaky_relu(x, slope=0.1, backward_dtype_bug=False):
    positive = x.data > 0
    out = x.xp.where(positive, x.data, slope * x.data)

    def backward(grad):
        local = x.xp.where(positive, 1.0, slope)  # float64: Python floats
        return (grad * (local if backward_dtype_bug else local.astype(grad.dtype)),)

    return Tensor.from_op("leaky_relu", out, backward, x)


def test_check_op_passes_a_correct_op():
    x = np.array([[-1.5, 0.25], [2.0, -0.75]])
    assert check_op(leaky_relu, [x])


def test_check_op_catches_a_backward_that_returns_float64_for_float32_inputs():
    x = np.array([[-1.5, 0.25], [2.0, -0.75]])
    assert tinyres.gradcheck(lambda t: leaky_relu(t, backward_dtype_bug=True), [Tensor(x, requires_grad=True, dtype="float64")])
    with pytest.raises(GradcheckError, match="on the numpy backend, in float32: leaky_relu backward returned .* dtype float64"):
        check_op(lambda t: leaky_relu(t, backward_dtype_bug=True), [x])


def test_check_op_catches_what_the_strict_backend_refuses():
    def host_only(x):  # np.asarray(x.data) works on NumPy arrays; CuPy refuses it for device arrays
        out = x.xp.asarray(np.asarray(x.data) * 2)
        return Tensor.from_op("double", out, lambda g: (g * 2,), x)

    with pytest.raises(GradcheckError, match="on the strict backend, in float64: .*implicit conversion"):
        check_op(host_only, [np.ones(3)])


def test_a_backward_returning_a_bare_array_is_named_as_such():
    x = Tensor(np.ones(3), requires_grad=True)
    y = Tensor.from_op("double", x.data * 2, lambda g: g * 2, x)
    with pytest.raises(RuntimeError, match=r"double backward returned type ndarray, not a tuple.*return \(grad_x,\)"):
        y.sum().backward()


def test_gradcheck_of_a_numpy_array_says_it_is_not_a_tensor():
    with pytest.raises(TypeError, match=r"input 0 is a numpy.ndarray, not a Tensor.*tinyres.Tensor\(x, requires_grad=True"):
        tinyres.gradcheck(lambda x: x * 2, [np.ones(3)])


def test_sgd_refuses_one_tensor_and_an_empty_list_as_pytorch_does():
    w = Tensor(np.ones((3, 2)), requires_grad=True)
    with pytest.raises(TypeError, match=r"SGD\(\[w\], \.\.\.\)"):
        SGD(w, lr=0.1)  # iterating w would give its rows: views that no gradient reaches

    class ForgotSequential(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = [nn.Linear(2, 2)]  # a plain list: not registered

    with pytest.raises(ValueError, match="no parameters to train.*nn.Sequential"):
        SGD(ForgotSequential().parameters(), lr=0.1)


def test_a_module_that_overrides_train_keeps_its_mode():
    # the fine-tuning habit: batch norms frozen in evaluation mode while the rest trains
    class FrozenBatchNorm(nn.BatchNorm2d):
        def train(self, mode=True):
            return super().train(False)

    net = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), FrozenBatchNorm(4), nn.ReLU())
    net.train()
    assert net.training and net[0].training and not net[1].training
    before = net[1].running_mean.copy()
    net(batch()[0])
    np.testing.assert_array_equal(net[1].running_mean, before)  # its statistics stay as they were


def test_numpy_takes_a_tensor_that_needs_no_gradient_and_refuses_one_that_does():
    logits = cifar_resnet(8).eval()(batch()[0])
    with pytest.raises(TypeError, match=r"requires grad.*tensor\.numpy\(\)"):
        np.argmax(logits, axis=1)
    with tinyres.no_grad():
        logits = cifar_resnet(8).eval()(batch()[0])
    np.testing.assert_array_equal(np.argmax(logits, axis=1), logits.numpy().argmax(axis=1))
    assert np.asarray(logits, dtype=np.float64).dtype == np.float64
    with pytest.raises(TypeError, match=r"on strict without a copy to the host: use tensor\.numpy\(\)"):
        np.asarray(logits.to("strict"))  # a GPU's array is copied to the host only when asked
    with pytest.raises(TypeError, match=r"0-d tensor.*\.item\(\)"):
        len(logits.sum())


def test_an_input_that_required_a_gradient_is_freed_with_its_last_reference():
    import gc
    import weakref

    gc.disable()  # no help from the cycle collector: freed by reference counting alone
    try:
        x = Tensor(np.ones((2, 3)), requires_grad=True)
        (x * 2.0).sum().backward()
        assert x.grad is not None
        alive = weakref.ref(x)
        del x
        assert alive() is None
    finally:
        gc.enable()


def test_a_tensor_used_in_a_graph_pickles_and_deep_copies_into_a_tensor_of_its_own():
    import copy
    import pickle

    w = Tensor(np.ones(3), requires_grad=True)
    y = (w * 2.0).sum()  # the graph holds w's gradient accumulator
    for clone in (copy.deepcopy(w), pickle.loads(pickle.dumps(w))):
        (clone * 3.0).sum().backward()
        np.testing.assert_array_equal(clone.grad, [3.0, 3.0, 3.0])  # the copy's own gradient
    assert w.grad is None
    y.backward()
    np.testing.assert_array_equal(w.grad, [2.0, 2.0, 2.0])
    shallow = copy.copy(w)
    (shallow * 3.0).sum().backward()
    np.testing.assert_array_equal(w.grad, [2.0, 2.0, 2.0])  # the copy's gradient is its own
    with pytest.raises(TypeError, match=r"only a leaf tensor .* tensor\.detach\(\)"):
        copy.deepcopy(w * 2.0)  # a computed tensor: its copy would feed hidden copies of the leaves


def test_flatten_keeps_an_empty_batch():
    assert F.flatten(Tensor(np.zeros((0, 4, 1, 1))), 1).shape == (0, 4)
