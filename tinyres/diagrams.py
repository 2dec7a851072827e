"""Block diagrams of the paper's residual blocks, drawn with matplotlib (chapter 6).

    from tinyres.diagrams import draw_block
    ax = draw_block("basic")        # or "bottleneck", "option_a"; returns the Axes
    ax.figure.savefig("basic.png")

Three kinds, each drawn top to bottom with the input at the top, as in the paper's Figures 2 and 5:

    basic        two 3x3 conv-BN layers with a ReLU between, the identity shortcut, the
                 addition, and the ReLU after the addition (BasicBlock; Figure 2)
    bottleneck   1x1 (reduce), 3x3, 1x1 (expand) conv-BN layers, identity shortcut (Bottleneck;
                 Figure 5, right)
    option_a     a basic block that halves the resolution and doubles the channels, with the
                 option-A shortcut: keep every second pixel, append zero channels (ZeroPadShortcut)

The paper's figures leave batch norm out; these draw every op the block runs, in the order
tinyres's blocks run them (tests/test_diagrams.py checks that against the autograd graph of
``BasicBlock`` and ``Bottleneck``).

A diagram is laid out as data first: :func:`block_layout` returns a :class:`Diagram` of nodes
(boxes with their centre and size, the addition as a circle, the input and output as text) and
edges (the polyline of each arrow, from the edge of one node to the edge of the next). :func:`draw`
only renders that. Every drawn artist carries a gid (``node:NAME``, ``label:NAME``,
``edge:SOURCE->TARGET``), so a test can find it again in the figure.

matplotlib is imported inside :func:`draw`: ``import tinyres`` does not need it.
"""

from dataclasses import dataclass

KINDS = ("basic", "bottleneck", "option_a")

BOX_WIDTH, BOX_HEIGHT = 2.0, 0.44      # layer boxes, in data units (the axes have equal aspect)
TALL_BOX_HEIGHT = 0.62                  # two-line boxes of the option-A shortcut
TEXT_HEIGHT = 0.36                      # the input and output, drawn as text
ADD_RADIUS = 0.2
STEP = 0.72                             # vertical distance between the centres of successive nodes
INPUT_GAP = 0.3                         # extra room under the input, for the shortcut's junction
SHORTCUT_X = 2.4                        # the column of the shortcut, right of the branch

COLORS = {"conv2d": "#cfe2f3", "batch_norm": "#fff2cc", "relu": "#d9ead3", "getitem": "#f4cccc",
          "pad": "#f4cccc", "add": "white"}


@dataclass(frozen=True)
class Node:
    """One box of a diagram.

    ``op`` is the name of the tinyres op the box stands for (``"conv2d"``, ``"batch_norm"``,
    ``"relu"``, ``"add"``, ``"getitem"`` for the strided subsampling, ``"pad"``), or None for
    the block's input and output. ``shape`` is ``"box"``, ``"circle"`` (the addition) or
    ``"text"`` (input and output); ``x``, ``y`` is its centre.
    """

    name: str
    label: str
    op: str
    shape: str
    x: float
    y: float
    width: float
    height: float

    @property
    def top(self):
        return self.y + self.height / 2

    @property
    def bottom(self):
        return self.y - self.height / 2


@dataclass(frozen=True)
class Edge:
    """An arrow from ``source`` to ``target`` along ``points`` (the first on the source's edge,
    the last, the arrow's tip, on the target's)."""

    source: str
    target: str
    points: tuple


@dataclass(frozen=True)
class Diagram:
    """Nodes, edges and annotations of one block. ``main`` names the nodes between the input
    and the output through the branch F (its layers, the addition, the last ReLU), ``shortcut``
    the boxes of the shortcut (none for an identity), each top to bottom; ``branch`` is (top,
    bottom) of the bracket marked F(x)."""

    kind: str
    title: str
    nodes: tuple
    edges: tuple
    main: tuple
    shortcut: tuple
    shortcut_label: str
    branch: tuple

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)


def _layers(kind, channels, inner, in_channels):
    """The branch's ops, the input's and output's labels, the shortcut's boxes and the title."""
    conv_bn = lambda k, c, name, extra="": [  # noqa: E731
        (f"conv{name}", f"{k}×{k} conv, {c}{extra}", "conv2d"), (f"bn{name}", "batch norm", "batch_norm")]
    if kind == "basic":
        branch = conv_bn(3, channels, 1) + [("relu1", "ReLU", "relu")] + conv_bn(3, channels, 2)
        ends = (f"x: {channels} channels", "relu(F(x) + x)")
        return branch, ends, [], "identity", "Basic block (Figure 2), as in the CIFAR-10 ResNets"
    if kind == "bottleneck":
        branch = (conv_bn(1, inner, 1) + [("relu1", "ReLU", "relu")] + conv_bn(3, inner, 2)
                  + [("relu2", "ReLU", "relu")] + conv_bn(1, channels, 3))
        ends = (f"x: {channels} channels", "relu(F(x) + x)")
        return branch, ends, [], "identity", "Bottleneck block (Figure 5, right), ResNet-50/101/152"
    if kind == "option_a":
        out_channels = 2 * in_channels
        branch = conv_bn(3, out_channels, 1, ", /2") + [("relu1", "ReLU", "relu")] + conv_bn(3, out_channels, 2)
        ends = (f"x: {in_channels} channels, 32×32", f"{out_channels} channels, 16×16")
        shortcut = [("subsample", f"keep every 2nd pixel\n{in_channels} channels, 16×16", "getitem"),
                    ("pad", f"append {out_channels - in_channels} zero channels\n{out_channels} channels, 16×16", "pad")]
        return branch, ends, shortcut, "option A", "Option A: a block that halves the resolution"
    raise ValueError(f"block diagram kind must be one of {', '.join(KINDS)}, got {kind!r}")


def block_layout(kind, channels=None, inner=64, in_channels=16):
    """The :class:`Diagram` of one kind of block (see the module's docstring).

    ``channels``: the block's output width (default 64 for "basic", 256 for "bottleneck");
    ``inner``: the bottleneck's width between its 1x1 convolutions; ``in_channels``: the input
    width of the "option_a" block (its output has twice as many).
    """
    if channels is None:
        channels = 256 if kind == "bottleneck" else 64
    branch, (input_label, output_label), shortcut_ops, shortcut_label, title = _layers(kind, channels, inner, in_channels)
    column = [("x", input_label, None)] + branch + [("add", "+", "add"), ("relu_out", "ReLU", "relu"), ("out", output_label, None)]
    nodes = []
    for i, (name, label, op) in enumerate(column):
        if op is None:
            shape, width, height = "text", BOX_WIDTH, TEXT_HEIGHT
        elif op == "add":
            shape, width, height = "circle", 2 * ADD_RADIUS, 2 * ADD_RADIUS
        else:
            shape, width, height = "box", BOX_WIDTH, BOX_HEIGHT
        nodes.append(Node(name, label, op, shape, 0.0, -i * STEP - (INPUT_GAP if i else 0.0), width, height))
    by_name = {n.name: n for n in nodes}
    x, add = by_name["x"], by_name["add"]
    junction = x.bottom - 0.2

    # the shortcut's boxes, spread evenly over the branch's height
    first, last = nodes[1], nodes[len(branch)]
    gap = (first.y - last.y) / (len(shortcut_ops) + 1)
    shortcut_nodes = [Node(name, label, op, "box", SHORTCUT_X, first.y - (k + 1) * gap, BOX_WIDTH + 0.5, TALL_BOX_HEIGHT)
                      for k, (name, label, op) in enumerate(shortcut_ops)]

    edges = [Edge(a.name, b.name, ((a.x, a.bottom), (b.x, b.top))) for a, b in zip(nodes, nodes[1:])]
    start = (x.x, x.bottom)
    if not shortcut_nodes:  # identity: around the branch, into the right of the addition
        edges.append(Edge("x", "add", (start, (0.0, junction), (SHORTCUT_X, junction), (SHORTCUT_X, add.y),
                                       (add.x + ADD_RADIUS, add.y))))
    else:
        top = shortcut_nodes[0]
        edges.append(Edge("x", top.name, (start, (0.0, junction), (SHORTCUT_X, junction), (SHORTCUT_X, top.top))))
        for a, b in zip(shortcut_nodes, shortcut_nodes[1:]):
            edges.append(Edge(a.name, b.name, ((a.x, a.bottom), (b.x, b.top))))
        end = shortcut_nodes[-1]
        edges.append(Edge(end.name, "add", ((end.x, end.bottom), (SHORTCUT_X, add.y), (add.x + ADD_RADIUS, add.y))))
    return Diagram(kind, title, tuple(nodes + shortcut_nodes), tuple(edges),
                   main=tuple(n.name for n in nodes[1:-1]),
                   shortcut=tuple(n.name for n in shortcut_nodes), shortcut_label=shortcut_label,
                   branch=(first.top, last.bottom))


def extent(diagram):
    """(left, right, bottom, top) of everything drawn, with a margin, in data units."""
    left = -BOX_WIDTH / 2 - 1.0                              # room for the F(x) bracket and its label
    right = max(n.x + n.width / 2 for n in diagram.nodes)
    right = max(right, SHORTCUT_X + 1.1) + 0.15              # room for the shortcut's label
    bottom = min(n.bottom for n in diagram.nodes) - 0.15
    top = max(n.top for n in diagram.nodes) + 0.15
    return left, right, bottom, top


def draw(diagram, ax=None):
    """Draw a :class:`Diagram` into ``ax`` (a new figure sized to it if None); return the Axes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch
    from matplotlib.path import Path

    left, right, bottom, top = extent(diagram)
    if ax is None:
        fig, ax = plt.subplots(figsize=(0.85 * (right - left), 0.85 * (top - bottom) + 0.4))
        fig.subplots_adjust(left=0, right=1, bottom=0, top=1 - 0.4 / fig.get_figheight())
    for n in diagram.nodes:
        if n.shape == "box":
            ax.add_patch(FancyBboxPatch((n.x - n.width / 2, n.bottom), n.width, n.height,
                                        boxstyle="round,pad=0,rounding_size=0.06", facecolor=COLORS[n.op],
                                        edgecolor="black", lw=0.8, zorder=2, gid=f"node:{n.name}"))
        elif n.shape == "circle":
            ax.add_patch(Circle((n.x, n.y), n.width / 2, facecolor=COLORS[n.op], edgecolor="black", lw=0.8,
                                zorder=2, gid=f"node:{n.name}"))
        size = 11 if n.shape == "circle" else 8.5
        ax.text(n.x, n.y, n.label, ha="center", va="center", fontsize=size, zorder=3, gid=f"label:{n.name}",
                style="italic" if n.shape == "text" else "normal")
    for e in diagram.edges:
        ax.add_patch(FancyArrowPatch(path=Path(e.points), arrowstyle="-|>", mutation_scale=9, lw=0.9,
                                     color="black", zorder=1, gid=f"edge:{e.source}->{e.target}"))
    junction = next(e for e in diagram.edges if e.source == "x" and e.target != "conv1").points[1]
    ax.plot(*junction, "o", color="black", ms=3, zorder=3)
    # the bracket around the branch, F(x), and the shortcut's name beside its vertical segment
    bx, (btop, bbottom) = -BOX_WIDTH / 2 - 0.2, diagram.branch
    ax.plot([bx + 0.08, bx, bx, bx + 0.08], [btop, btop, bbottom, bbottom], color="gray", lw=0.8)
    ax.text(bx - 0.1, (btop + bbottom) / 2, "F(x)", ha="right", va="center", fontsize=10, color="dimgray")
    label_y = diagram.node("add").y + 0.45 if not diagram.shortcut else diagram.node(diagram.shortcut[0]).top + 0.3
    ax.text(SHORTCUT_X + 0.1, label_y, diagram.shortcut_label, ha="left", va="center", fontsize=9, color="dimgray",
            gid="label:shortcut")
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(diagram.title, fontsize=9.5)
    return ax


def draw_block(kind, ax=None, **sizes):
    """Draw the block diagram ``kind`` ("basic", "bottleneck" or "option_a") into ``ax`` (a new
    figure if None) and return the Axes. ``sizes``: the keyword arguments of :func:`block_layout`."""
    return draw(block_layout(kind, **sizes), ax)
