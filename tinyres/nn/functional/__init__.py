"""The ops of tinyres, as functions of tensors (``tinyres.nn.functional``, usually imported as F).

One file per family; each op computes its forward and, right below it, its backward:

- arithmetic.py: add, sub, mul, div, neg, power, exp, log, matmul, astype
- reduce.py:     sum, mean, max
- shape.py:      reshape, transpose, flatten, pad, getitem (strided slicing), concat
- activation.py: relu
- conv.py:       conv2d (with im2col and col2im)
- batch_norm.py: batch_norm
- pooling.py:    max_pool2d, avg_pool2d, global_avg_pool2d
- linear.py:     linear
- dropout.py:    dropout
- loss.py:       log_softmax, cross_entropy
"""

from tinyres.nn.functional.activation import relu
from tinyres.nn.functional.arithmetic import add, astype, div, exp, log, matmul, mul, neg, power, sub
from tinyres.nn.functional.batch_norm import batch_norm
from tinyres.nn.functional.conv import col2im, conv2d, im2col
from tinyres.nn.functional.dropout import dropout
from tinyres.nn.functional.linear import linear
from tinyres.nn.functional.loss import cross_entropy, log_softmax
from tinyres.nn.functional.pooling import avg_pool2d, global_avg_pool2d, max_pool2d
from tinyres.nn.functional.reduce import max, mean, sum  # noqa: A004
from tinyres.nn.functional.shape import concat, flatten, getitem, pad, reshape, transpose

__all__ = [
    "add", "astype", "avg_pool2d", "batch_norm", "col2im", "concat", "conv2d", "cross_entropy",
    "div", "dropout", "exp", "flatten", "getitem", "global_avg_pool2d", "im2col", "linear", "log",
    "log_softmax", "matmul", "max", "max_pool2d", "mean", "mul", "neg", "pad", "power", "relu",
    "reshape", "sub", "sum", "transpose",
]
