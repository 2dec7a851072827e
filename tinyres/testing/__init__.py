"""Tools to test ops, yours included: ``gradcheck``, hypothesis ``strategies`` and the
``strict`` backend that catches code that would break on CuPy."""
