"""Tools to test ops, yours included: ``check_op`` (the suite's checks of an op in one call),
``gradcheck``, hypothesis ``strategies``, the ``strict`` backend that catches code that would
break on CuPy, and ``exercises.unavailable`` (the chapters' check cells: the library's own answer
to an exercise may not be called)."""

from tinyres.testing.gradcheck import GradcheckError, gradcheck
from tinyres.testing.op_check import check_op

__all__ = ["GradcheckError", "check_op", "gradcheck"]
