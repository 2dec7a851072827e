"""log-softmax and the cross-entropy loss, computed stably."""

from tinyres.nn.functional.common import check_inputs
from tinyres.tensor import Tensor


def log_softmax(x, axis=-1):
    """log(softmax(x)) along ``axis``."""
    check_inputs("log_softmax", x)
    xp = x.xp
    shifted = x.data - x.data.max(axis=axis, keepdims=True)
    out = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))

    def backward(g):  # y = z - lse(z):  dz = g - softmax(z) * sum(g)
        return (g - xp.exp(out) * g.sum(axis=axis, keepdims=True),)

    return Tensor.from_op("log_softmax", out, backward, x)


def cross_entropy(logits, labels):
    """Mean over the batch of -log softmax(logits)[label].

    Args:
        logits: (N, num_classes) float tensor.
        labels: (N,) integer class indices in [0, num_classes), an array or a Tensor.
    """
    labels = labels.data if isinstance(labels, Tensor) else labels
    _check_cross_entropy(logits, labels)
    n, xp = logits.shape[0], logits.xp
    log_probs = log_softmax(logits, axis=1)
    rows = xp.arange(n)
    loss = -log_probs.data[rows, labels].mean()

    def backward(g):  # d loss / d log_probs = -onehot(label) / N; log_softmax's backward
        grad = xp.zeros_like(log_probs.data)  # then gives d loss / d logits = (softmax - onehot) / N
        grad[rows, labels] = -g / n
        return (grad,)

    return Tensor.from_op("cross_entropy", loss, backward, log_probs)


def _check_cross_entropy(logits, labels):
    check_inputs("cross_entropy", logits)
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be (batch, classes), got shape {logits.shape}")
    n, classes = logits.shape
    if not hasattr(labels, "dtype") or labels.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: labels must be an integer array, got {getattr(labels, 'dtype', type(labels).__name__)}")
    if tuple(labels.shape) != (n,):
        raise ValueError(f"cross_entropy: labels must have shape ({n},) to match logits {logits.shape}, got {tuple(labels.shape)}")
    if type(labels) is not type(logits.data):
        raise ValueError(
            f"cross_entropy: labels are a {type(labels).__module__}.{type(labels).__name__} but "
            f"logits live on backend {logits.backend.name!r}; move the labels to that backend"
        )
    if n and bool(((labels < 0) | (labels >= classes)).any()):  # one device-to-host sync on a GPU
        raise ValueError(
            f"cross_entropy: labels must be in [0, {classes}), got values from "
            f"{int(labels.min())} to {int(labels.max())}"
        )
