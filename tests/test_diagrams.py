"""tinyres.diagrams: the block diagrams of chapter 6 say what the library's blocks compute, and
the drawn figure shows it (labelled boxes top to bottom, arrows from one node's edge to the next,
labels inside their boxes, nothing overlapping or cut off)."""

import numpy as np
import pytest

import tinyres
from tinyres.diagrams import KINDS, block_layout, draw_block
from tinyres.models.blocks import BasicBlock, Bottleneck

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.path import Path  # noqa: E402

# what each diagram should show between the input and the output, top to bottom
EXPECTED_MAIN = {
    "basic": ["3×3 conv, 64", "batch norm", "ReLU", "3×3 conv, 64", "batch norm", "+", "ReLU"],
    "bottleneck": ["1×1 conv, 64", "batch norm", "ReLU", "3×3 conv, 64", "batch norm", "ReLU",
                   "1×1 conv, 256", "batch norm", "+", "ReLU"],
    "option_a": ["3×3 conv, 32, /2", "batch norm", "ReLU", "3×3 conv, 32", "batch norm", "+", "ReLU"],
}
EXPECTED_SHORTCUT = {"basic": [], "bottleneck": [],
                     "option_a": ["keep every 2nd pixel\n16 channels, 16×16", "append 16 zero channels\n32 channels, 16×16"]}


def library_block(kind):
    """The block of tinyres that the diagram of ``kind`` (with its default sizes) depicts."""
    tinyres.manual_seed(0)
    return {"basic": lambda: BasicBlock(64, 64), "bottleneck": lambda: Bottleneck(256, 64),
            "option_a": lambda: BasicBlock(16, 32, stride=2)}[kind]()


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(params=KINDS)
def drawn(request):
    """(kind, layout, Axes drawn on an Agg canvas, renderer)."""
    ax = draw_block(request.param)
    ax.figure.canvas.draw()
    return request.param, block_layout(request.param), ax, ax.figure.canvas.get_renderer()


def artist(ax, gid):
    found = [a for a in list(ax.patches) + list(ax.texts) if a.get_gid() == gid]
    assert len(found) == 1, f"expected one artist {gid!r} in the figure, found {len(found)}"
    return found[0]


def drawn_geometry(ax, node):
    """The node as drawn, in data units: ('box', x0, y0, x1, y1) or ('circle', cx, cy, r). The
    input and output are text without a frame: their layout box stands in for them."""
    if node.shape == "text":
        return ("box", node.x - node.width / 2, node.bottom, node.x + node.width / 2, node.top)
    patch = artist(ax, f"node:{node.name}")
    if node.shape == "circle":
        return ("circle", *patch.center, patch.radius)
    return ("box", patch.get_x(), patch.get_y(), patch.get_x() + patch.get_width(), patch.get_y() + patch.get_height())


def distance_to_boundary(geometry, point):
    px, py = point
    if geometry[0] == "circle":
        _, cx, cy, r = geometry
        return abs(np.hypot(px - cx, py - cy) - r)
    _, x0, y0, x1, y1 = geometry
    dx, dy = max(x0 - px, 0, px - x1), max(y0 - py, 0, py - y1)
    if dx or dy:  # outside
        return float(np.hypot(dx, dy))
    return min(px - x0, x1 - px, py - y0, y1 - py)


def strictly_inside(geometry, point, margin=1e-6):
    px, py = point
    if geometry[0] == "circle":
        _, cx, cy, r = geometry
        return np.hypot(px - cx, py - cy) < r - margin
    _, x0, y0, x1, y1 = geometry
    return x0 + margin < px < x1 - margin and y0 + margin < py < y1 - margin


# ----- the drawn figure ------------------------------------------------------------------------

def test_boxes_carry_their_labels_top_to_bottom_in_the_order_of_the_block(drawn):
    kind, layout, ax, _ = drawn
    for path, expected in ((layout.main, EXPECTED_MAIN[kind]), (layout.shortcut, EXPECTED_SHORTCUT[kind])):
        labels, heights = [], []
        for name in path:
            text = artist(ax, f"label:{name}")
            geometry = drawn_geometry(ax, layout.node(name))
            assert strictly_inside(geometry, text.get_position()), f"{name}: its label is not inside its box"
            labels.append(text.get_text())
            heights.append(text.get_position()[1])
        assert labels == expected
        assert all(a > b for a, b in zip(heights, heights[1:])), f"{kind}: not drawn top to bottom: {labels}"
    # the input is above everything, the output below everything
    assert artist(ax, "label:x").get_position()[1] > max(n.top for n in layout.nodes if n.name != "x")
    assert artist(ax, "label:out").get_position()[1] < min(n.bottom for n in layout.nodes if n.name != "out")


def test_every_arrow_leaves_its_source_and_ends_on_its_target(drawn):
    kind, layout, ax, _ = drawn
    arrows = [p for p in ax.patches if str(p.get_gid()).startswith("edge:")]
    assert len(arrows) == len(layout.edges)
    for edge in layout.edges:
        arrow = artist(ax, f"edge:{edge.source}->{edge.target}")
        path = arrow.get_path()  # as drawn: the line and the arrow head, in data units
        points = path.vertices[path.codes != Path.CLOSEPOLY]
        source, target = (drawn_geometry(ax, layout.node(n)) for n in (edge.source, edge.target))
        assert distance_to_boundary(source, points[0]) < 1e-6, f"{edge}: does not start on {edge.source}"
        tip = min(distance_to_boundary(target, p) for p in points)
        assert tip < 0.03, f"{edge}: its tip is {tip:.3f} from {edge.target}"
        # the arrow head is at the target end, not at the source
        head = points[-3:]
        assert all(distance_to_boundary(target, p) < 0.2 for p in head), f"{edge}: the head is not at {edge.target}"


def test_arrows_go_around_the_boxes_they_do_not_join(drawn):
    kind, layout, ax, _ = drawn
    for edge in layout.edges:
        for node in layout.nodes:
            if node.name in (edge.source, edge.target):
                continue
            geometry = drawn_geometry(ax, node)
            for (x0, y0), (x1, y1) in zip(edge.points, edge.points[1:]):
                samples = [(x0 + t * (x1 - x0), y0 + t * (y1 - y0)) for t in np.linspace(0, 1, 101)]
                assert not any(strictly_inside(geometry, p) for p in samples), f"{edge} crosses {node.name}"


def test_the_arrows_make_two_paths_from_input_to_addition_then_one_to_the_output(drawn):
    kind, layout, _, _ = drawn
    into = {n.name: [e.source for e in layout.edges if e.target == n.name] for n in layout.nodes}
    out_of = {n.name: [e.target for e in layout.edges if e.source == n.name] for n in layout.nodes}
    assert sorted(into["add"]) == sorted([layout.main[layout.main.index("add") - 1], (layout.shortcut or ("x",))[-1]])
    assert len(out_of["x"]) == 2 and into["x"] == [] and out_of["out"] == []
    for name in set(into) - {"x", "add"}:
        assert len(into[name]) == 1, f"{name} has {len(into[name])} incoming arrows"
    # following the arrows from x along the branch visits the main column in order
    column, name = [], layout.main[0]
    while name != "out":
        column.append(name)
        (name,) = out_of[name]
    assert column == list(layout.main)


def test_labels_fit_in_their_boxes_and_nothing_overlaps_or_is_cut_off(drawn):
    kind, layout, ax, renderer = drawn
    axes_box = ax.get_window_extent(renderer)
    boxes = {}
    for node in layout.nodes:
        text_box = artist(ax, f"label:{node.name}").get_window_extent(renderer)
        assert axes_box.x0 <= text_box.x0 and text_box.x1 <= axes_box.x1, f"{node.name}: label cut off"
        assert axes_box.y0 <= text_box.y0 and text_box.y1 <= axes_box.y1, f"{node.name}: label cut off"
        if node.shape != "text":
            patch_box = artist(ax, f"node:{node.name}").get_window_extent(renderer)
            assert patch_box.x0 <= text_box.x0 and text_box.x1 <= patch_box.x1, f"{node.name}: label wider than its box"
            assert patch_box.y0 <= text_box.y0 and text_box.y1 <= patch_box.y1, f"{node.name}: label taller than its box"
            boxes[node.name] = patch_box
        else:
            boxes[node.name] = text_box
    names = sorted(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not boxes[a].overlaps(boxes[b]), f"{a} and {b} overlap"


# ----- the diagram against the library's blocks ---------------------------------------------------

def op_chains(block, x_shape):
    """The ops of ``block`` as its autograd graph records them: (branch, shortcut, after the
    addition), each top to bottom, following every op's first (data) input back to the input."""
    x = tinyres.Tensor(np.random.default_rng(0).random(x_shape, dtype=np.float32), requires_grad=True)
    y = block(x)
    leaf = x._node()

    def back_to_input(node):
        names = []
        while node is not leaf:
            names.append(node.name)
            node = node.inputs[0]
        return names[::-1]

    after, node = [], y.grad_fn
    while node.name != "add":
        after.append(node.name)
        node = node.inputs[0]
    chains = [back_to_input(parent) for parent in node.inputs]
    branch, shortcut = sorted(chains, key=lambda ops: "conv2d" not in ops)
    return branch, shortcut, ["add"] + after[::-1]


@pytest.mark.parametrize("kind", KINDS)
def test_diagram_shows_the_ops_the_library_block_runs_in_that_order(kind):
    layout = block_layout(kind)
    block = library_block(kind)
    in_channels = block.conv1.in_channels
    branch, shortcut, after = op_chains(block, (2, in_channels, 8, 8))
    ops = [layout.node(name).op for name in layout.main]
    split = ops.index("add")
    assert ops[:split] == branch
    assert ops[split:] == after
    assert [layout.node(name).op for name in layout.shortcut] == shortcut


@pytest.mark.parametrize("kind", KINDS)
def test_convolution_labels_give_the_library_blocks_kernel_width_and_stride(kind):
    layout = block_layout(kind)
    block = library_block(kind)
    convs = [m for m in (getattr(block, f"conv{i}", None) for i in (1, 2, 3)) if m is not None]
    expected = [f"{c.kernel_size[0]}×{c.kernel_size[1]} conv, {c.out_channels}" + (", /2" if c.stride == 2 else "")
                for c in convs]
    assert [layout.node(n).label for n in layout.main if layout.node(n).op == "conv2d"] == expected


def test_option_a_boxes_describe_the_library_shortcut():
    layout = block_layout("option_a")
    shortcut = library_block("option_a").shortcut
    x = tinyres.Tensor(np.ones((1, 16, 32, 32), np.float32))
    y = shortcut(x)
    _, channels, height, width = y.shape
    assert layout.node("pad").label == f"append {shortcut.extra} zero channels\n{channels} channels, {height}×{width}"
    assert layout.node("subsample").label.endswith(f"{x.shape[1]} channels, {height}×{width}")
    assert layout.node("x").label == "x: 16 channels, 32×32" and layout.node("out").label == f"{channels} channels, {height}×{width}"


def test_sizes_can_be_changed():
    layout = block_layout("bottleneck", channels=1024, inner=256)
    labels = [layout.node(n).label for n in layout.main]
    assert labels[0] == "1×1 conv, 256" and labels[6] == "1×1 conv, 1024"
    assert layout.node("x").label == "x: 1024 channels"


def test_draws_into_a_given_axes_and_returns_it():
    fig, (left, right) = plt.subplots(1, 2)
    assert draw_block("basic", right) is right
    assert not left.patches and right.patches


def test_unknown_kind_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="basic, bottleneck, option_a"):
        block_layout("preactivation")
