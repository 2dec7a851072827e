"""Reverse-mode automatic differentiation: the graph and the backward pass.

Every op that produces a tensor from tensors that need gradients also records a :class:`Node`:
the op's name, a ``backward`` function (a closure written right below the op's forward, that
turns the gradient of the output into gradients of the inputs), and the nodes of its inputs.
Leaf tensors (parameters, inputs you asked gradients for) are represented by a
:class:`GradAccumulator` that adds what arrives into ``tensor.grad``.

``backward`` then needs two steps:

1. order the nodes so that every node comes before the nodes of its inputs (a topological
   order of the graph, found with an explicit stack, so a 1202-layer network does not hit
   Python's recursion limit);
2. walk that order once, calling each node's backward with the sum of the gradients its output
   received, and handing the results on to its inputs (the chain rule).

Nodes reference the nodes of their inputs, not the input tensors, so an intermediate result that
no backward needs is freed as soon as the forward pass drops it; and each node's saved arrays are
freed as soon as its backward has run.
"""

import contextlib

_grad_enabled = True


def is_grad_enabled():
    return _grad_enabled


@contextlib.contextmanager
def _set_grad_enabled(mode):
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, mode
    try:
        yield
    finally:
        _grad_enabled = previous


def no_grad():
    """Context manager (and decorator) in which ops record no graph: for evaluation and updates.

    >>> with tinyres.no_grad():
    ...     logits = model(images)
    """
    return _set_grad_enabled(False)


def enable_grad():
    """Undo :func:`no_grad` inside its block."""
    return _set_grad_enabled(True)


class Node:
    """One application of an op: how to send the gradient of its output back to its inputs.

    Attributes:
        name: the op's name, for error messages and graph drawings.
        backward: ``backward(grad_output) -> tuple of input grads`` (``None`` where an input needs
            none); set to ``None`` once it has run, which frees the arrays it saved.
        inputs: one entry per tensor input: that input's node, or ``None`` if it needs no grad.
        shape, dtype: of the output, to check what backward functions return.
    """

    __slots__ = ("name", "backward", "inputs", "shape", "dtype")

    def __init__(self, name, backward, inputs, shape, dtype):
        self.name = name
        self.backward = backward
        self.inputs = inputs
        self.shape = shape
        self.dtype = dtype

    def __repr__(self):
        return f"<{self.name} backward, output shape {self.shape}>"


class GradAccumulator(Node):
    """The node of a leaf tensor: adds the gradient that reaches it into ``tensor.grad``."""

    __slots__ = ("tensor", "__weakref__")  # (a leaf holds its accumulator weakly: see Tensor._node)

    def __init__(self, tensor):
        super().__init__("accumulate_grad", None, (), tensor.shape, tensor.dtype)
        self.tensor = tensor

    def accumulate(self, grad):
        if self.tensor.grad is None:
            self.tensor.grad = grad.copy()  # own it: grads handed around may be shared views
        else:
            self.tensor.grad += grad


def topological_order(root):
    """All nodes reachable from ``root``, each before the nodes of its inputs.

    Depth-first search with an explicit stack: a node is emitted after all of its inputs
    (post-order), and the reversed post-order is a topological order.
    """
    post_order, visited = [], {root}
    stack = [(root, iter(root.inputs))]
    while stack:
        node, inputs = stack[-1]
        for parent in inputs:
            if parent is not None and parent not in visited:
                visited.add(parent)
                stack.append((parent, iter(parent.inputs)))
                break
        else:  # every input of this node is done
            stack.pop()
            post_order.append(node)
    return post_order[::-1]


def run_backward(root, grad, retain_graph=False):
    """Propagate ``grad`` (the gradient of some scalar w.r.t. ``root``'s output) to all leaves."""
    grads = {root: grad}
    for node in topological_order(root):
        grad = grads.pop(node, None)
        if grad is None:  # nothing reached this node (every path to it had a None gradient)
            continue
        if isinstance(node, GradAccumulator):
            node.accumulate(grad)
            continue
        if node.backward is None:
            raise RuntimeError(
                f"backward through {node.name} a second time: its saved arrays were freed by the "
                "first backward. Pass retain_graph=True to the first call to backward twice."
            )
        input_grads = node.backward(grad)
        inputs = node.inputs
        _check_grads_tuple(node, input_grads, len(inputs))
        if not retain_graph:  # free what this node saved as soon as it is used
            node.backward, node.inputs = None, ()
        for parent, parent_grad in zip(inputs, input_grads):
            if parent is None or parent_grad is None:
                continue
            _check_grad(node, parent, parent_grad)
            if parent in grads:
                grads[parent] = grads[parent] + parent_grad  # tensor used twice: add (not +=,
            else:  # since the first grad may be a view of something else)
                grads[parent] = parent_grad


def _check_grads_tuple(node, grads, count):
    if not isinstance(grads, (tuple, list)) or len(grads) != count:
        got = f"{len(grads)} gradients" if isinstance(grads, (tuple, list)) else f"type {type(grads).__name__}, not a tuple"
        raise RuntimeError(
            f"{node.name} backward returned {got}; it must return a tuple with one gradient (or None) "
            f"per input of the op, {count} here: write `return (grad_x,)` for an op of one input"
        )


def _check_grad(node, parent, grad):
    if grad.shape != parent.shape or grad.dtype != parent.dtype:
        raise RuntimeError(
            f"{node.name} backward returned a gradient of shape {tuple(grad.shape)} and dtype "
            f"{grad.dtype} for an input of shape {tuple(parent.shape)} and dtype {parent.dtype}; "
            "a gradient must match its input exactly (sum over broadcast axes, keep the dtype)."
        )
