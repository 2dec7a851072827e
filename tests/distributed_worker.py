"""Run by tests/test_distributed.py as ``mpiexec -n 2 python tests/distributed_worker.py``: the MPI
communicator's collectives on arrays of the strict backend (a CuPy stand-in that refuses
implicit host transfers), i.e. the path a GPU takes without NCCL: device array -> host buffer ->
MPI -> device array. Each rank prints ``rank-R-ok`` when every check passes."""

import tinyres  # noqa: I001  (first, as in every tinyres program)

import numpy as np

from tinyres import distributed
from tinyres.nn.functional import batch_norm
from tinyres.testing.strict import StrictArray


def main():
    comm = distributed.world()
    assert type(comm) is distributed.MPICommunicator and comm.size == 2, comm
    strict = tinyres.get_backend("strict")
    comm.use(strict)

    # allreduce: the sum, in place, still a device array
    a = strict.asarray(np.arange(4.0) * (comm.rank + 1))
    assert comm.allreduce(a) is a and isinstance(a, StrictArray)
    np.testing.assert_array_equal(strict.to_numpy(a), np.arange(4.0) * 3)

    # average: gradients of three shapes, one Allreduce
    rng = np.random.default_rng(comm.rank)
    grads = [strict.asarray(rng.standard_normal(s)) for s in [(2, 3), (4,), ()]]
    mine = [strict.to_numpy(g) for g in grads]
    everyone = comm.allgather(mine)
    comm.average(grads)
    for i, g in enumerate(grads):
        assert isinstance(g, StrictArray)
        np.testing.assert_allclose(strict.to_numpy(g), (everyone[0][i] + everyone[1][i]) / 2, rtol=1e-15)

    # synchronized batch norm: this rank's half of a batch of 8 gives the whole batch's output
    rng = np.random.default_rng(42)  # the same batch on every rank
    x, g = rng.standard_normal((8, 3, 4, 4)), rng.standard_normal((8, 3, 4, 4))

    def forward_backward(x, g, comm=None):
        xt = tinyres.Tensor(x, requires_grad=True, dtype="float64", backend=strict)
        weight = tinyres.Tensor(np.full(3, 1.5), requires_grad=True, dtype="float64", backend=strict)
        bias = tinyres.Tensor(np.zeros(3), requires_grad=True, dtype="float64", backend=strict)
        y = batch_norm(xt, None, None, weight, bias, training=True, comm=comm)
        (y * tinyres.Tensor(g, dtype="float64", backend=strict)).sum().backward()
        return y.numpy(), strict.to_numpy(xt.grad)

    half = slice(4 * comm.rank, 4 * comm.rank + 4)
    y, dx = forward_backward(x[half], g[half], comm)
    y_whole, dx_whole = forward_backward(x, g)
    np.testing.assert_allclose(y, y_whole[half], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, dx_whole[half], rtol=1e-12, atol=1e-12)

    # the checksum of identical weights passes on every rank
    comm.check_identical({"w": np.ones(3)})
    print(f"rank-{comm.rank}-ok", flush=True)


if __name__ == "__main__":
    main()
