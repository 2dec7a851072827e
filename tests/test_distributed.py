"""Data-parallel training (tinyres/distributed.py): the single-process stand-in, the collectives
built on the communicator (checked with ranks that are threads of this process), synchronized
batch norm, the sharded loader, and whole runs under ``mpiexec -n 2`` compared with one process.

The mpiexec tests need mpi4py and an mpiexec (pip install -e '.[mpi]'); they skip without them.
"""

import functools
import hashlib
import importlib.util
import operator
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyres
from tinyres import checkpoint, distributed, train
from tinyres.cli import UsageError
from tinyres.data import Loader, cifar10, pixel_mean
from tinyres.nn.functional import batch_norm, cross_entropy
from tinyres.nn.functional.batch_norm import global_statistics

from .helpers import host, tensor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or MPIEXEC is None,
    reason="needs mpi4py and mpiexec: pip install -e '.[mpi]'")


# ----- ranks as threads of this process ---------------------------------------------------------
class ThreadRanks:
    """``size`` ranks that are threads of this process, each with a communicator: a stand-in for
    mpiexec that lets the collectives' users be tested in one process."""

    def __init__(self, size):
        self.size, self.barrier, self.slots = size, threading.Barrier(size, timeout=60), [None] * size
        self.allreduces = 0  # calls, counted once per collective (by rank 0)

    def run(self, fn):
        """[fn(communicator of rank r) for every rank r], each run in its own thread."""
        results, errors = [None] * self.size, []

        def rank_main(rank):
            try:
                results[rank] = fn(ThreadCommunicator(self, rank))
            except BaseException as error:  # noqa: BLE001  (re-raised below, in the test)
                errors.append(error)
                self.barrier.abort()

        threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(self.size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results


class ThreadCommunicator(distributed.Communicator):
    def __init__(self, ranks, rank):
        self.ranks, self.rank, self.size = ranks, rank, ranks.size

    def allgather(self, value):
        self.ranks.slots[self.rank] = value
        self.ranks.barrier.wait()
        values = list(self.ranks.slots)
        self.ranks.barrier.wait()  # nobody overwrites a slot before every rank has read them all
        return values

    def allreduce(self, array):
        self.ranks.allreduces += self.rank == 0
        total = functools.reduce(operator.add, self.allgather(array))  # in rank order, on every rank
        self.allgather(None)  # every rank has read every array before any is overwritten
        array[...] = total
        return array

    def broadcast(self, value):
        return self.allgather(value)[0]


# ----- the single-process stand-in --------------------------------------------------------------
def test_the_stand_in_is_rank_0_of_1_and_its_collectives_return_their_input(backend):
    comm = distributed.Communicator()
    assert (comm.rank, comm.size, comm.local_rank, comm.local_size) == (0, 1, 0, 1)
    a = tensor(backend, [1.0, 2.0, 3.0]).data
    assert comm.allreduce(a) is a
    assert comm.broadcast({"x": 1}) == {"x": 1} and comm.allgather(5) == [5]
    assert comm.agree(None) == (None,) and comm.agree("time limit", None) == ("time limit", None)
    comm.check_identical({"w": np.ones(3)})
    with comm.rank_zero_first():
        pass


def test_the_stand_in_averages_nothing_and_leaves_every_bit(backend):
    arrays = [tensor(backend, np.random.default_rng(0).standard_normal(s), dtype="float32").data for s in [(3, 2), (5,), ()]]
    before = [host(a) for a in arrays]
    distributed.Communicator().average(arrays)
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(host(a), b)


def test_without_a_launcher_world_is_the_stand_in(monkeypatch):
    for name in distributed.LAUNCHED_PROCESSES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "_world", None)
    assert type(distributed.world()) is distributed.Communicator


def test_mpiexec_without_mpi4py_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setattr(distributed, "_world", None)
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now raises ImportError
    with pytest.raises(distributed.DistributedUnavailable, match=r"2 processes, but mpi4py is not installed.*pip install -e '\.\[mpi\]'"):
        distributed.world()


def test_one_process_training_never_imports_mpi4py(tmp_path):
    write_cifar(tmp_path)
    code = ("import sys; from tinyres import train; "
            f"assert train.main({small_run(tmp_path, 'run', '--iterations', '1')!r}) == 0; "
            "assert 'mpi4py' not in sys.modules, 'mpi4py was imported'")
    env = {k: v for k, v in os.environ.items() if k not in distributed.LAUNCHED_PROCESSES}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)


def test_each_local_process_gets_its_share_of_the_cores():
    code = "import os, tinyres; print(os.environ.get('OPENBLAS_NUM_THREADS'), os.environ.get('OMP_NUM_THREADS'), tinyres.backend._cpu_count())"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}

    def run(**extra):
        return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, **extra}, check=True,
                              capture_output=True, text=True).stdout.split()

    cores = len(os.sched_getaffinity(0))
    share = str(max(1, cores // 2))
    assert run(MPI_LOCALNRANKS="2") == [share, share, str(min(8, int(share)))]
    assert run(OMPI_COMM_WORLD_LOCAL_SIZE="2")[:2] == [share, share]  # Open MPI's name for it
    assert run(MPI_LOCALNRANKS="2", OMP_NUM_THREADS="3")[:2] == ["None", "3"]  # the user's setting stays
    assert run()[:2] == ["None", "None"]  # one process: nothing set, as before


# ----- the collectives' users, with two ranks as threads ----------------------------------------
def test_average_is_the_mean_over_ranks_in_one_allreduce(backend):
    ranks = ThreadRanks(2)

    def rank_main(comm):
        rng = np.random.default_rng(comm.rank)
        arrays = [tensor(backend, rng.standard_normal(s)).data for s in [(3, 2), (5,), ()]]
        mine = [host(a) for a in arrays]
        comm.average(arrays)
        return mine, [host(a) for a in arrays]

    results = ranks.run(rank_main)
    assert ranks.allreduces == 1
    for i in range(3):
        expected = (results[0][0][i] + results[1][0][i]) / 2
        for _, averaged in results:
            np.testing.assert_allclose(averaged[i], expected, rtol=1e-15)
    np.testing.assert_array_equal(results[0][1][0], results[1][1][0])  # bit for bit the same on every rank


def test_average_refuses_mixed_dtypes():
    with pytest.raises(ValueError, match="one dtype, got float32, float64"):
        ThreadRanks(2).run(lambda comm: comm.average([np.zeros(2, np.float32), np.zeros(2)]))


class RankOfTwo(distributed.Communicator):
    """Rank 1 of a 2-process job whose MPI_Abort is recorded instead of done."""
    rank, size = 1, 2

    def __init__(self):
        self.aborted = []

    def abort(self, code):
        self.aborted.append(code)


@pytest.mark.parametrize("every_rank", [False, True])
def test_a_usage_error_met_by_every_rank_ends_the_job_without_mpi_abort(monkeypatch, capsys, every_rank):
    # MPI_Abort can cut off rank 0's message on its way through mpiexec; an error that every rank
    # meets needs no abort (nothing is left waiting), one that this rank may meet alone does, and
    # this rank says why (rank 0 is not there to say it: its data may be fine)
    comm = RankOfTwo()
    monkeypatch.setattr(distributed, "_world", comm)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)

    def main():
        raise UsageError("no such thing", every_rank=every_rank)

    if every_rank:
        with pytest.raises(UsageError) as raised:
            distributed.run(main)
        assert raised.value.code == 2 and comm.aborted == []
    else:
        distributed.run(main)  # (a real abort does not return)
        assert comm.aborted == [2]
        assert capsys.readouterr().err == "rank 1: error: no such thing\n"


def test_ranks_agree_to_stop_when_any_rank_asks():
    assert ThreadRanks(2).run(lambda comm: comm.agree("time limit" if comm.rank == 1 else None)) == [("time limit",)] * 2
    assert ThreadRanks(2).run(lambda comm: comm.agree(None)) == [(None,)] * 2
    # several decisions in one collective, each taken from the first rank that asks
    asks = {0: (None, "interrupted"), 1: ("due", "time limit"), 2: (None, None)}
    assert ThreadRanks(3).run(lambda comm: comm.agree(*asks[comm.rank])) == [("due", "interrupted")] * 3


def test_weights_that_differ_between_ranks_stop_every_rank():
    def rank_main(comm):
        weights = {"fc.weight": np.ones(4), "fc.bias": np.zeros(2)}
        comm.check_identical(weights)  # identical: passes
        weights["fc.bias"][1] = comm.rank * 1e-12
        with pytest.raises(distributed.RanksDiffer, match="the weights of rank 1 differ from rank 0's"):
            comm.check_identical(weights)

    ThreadRanks(2).run(rank_main)


@pytest.mark.parametrize("placement, own_gpu", [
    ([("node1", "0000:3b:00.0"), ("node1", "0000:5e:00.0")], True),   # two GPUs, one each
    ([("node1", "0000:3b:00.0"), ("node2", "0000:3b:00.0")], True),   # the same slot on two hosts
    ([("node1", "0000:3b:00.0"), ("node1", "0000:3b:00.0")], False),  # two ranks on one GPU
])
def test_nccl_is_used_when_every_rank_has_a_gpu_of_its_own_however_many_it_sees(monkeypatch, placement, own_gpu):
    # a launcher that sets CUDA_VISIBLE_DEVICES per rank shows each rank one GPU, its device 0;
    # counting visible GPUs (1 < 2 local ranks) would wrongly fall back to host copies
    from types import SimpleNamespace

    rank = 1
    runtime = SimpleNamespace(getDeviceCount=lambda: 1, deviceGetPCIBusId=lambda device: placement[rank][1])
    cupy = SimpleNamespace(cuda=SimpleNamespace(runtime=runtime, Device=lambda device: SimpleNamespace(use=lambda: None)))
    monkeypatch.setattr(distributed.socket, "gethostname", lambda: placement[rank][0])
    comm = object.__new__(distributed.MPICommunicator)
    comm.rank, comm.size, comm.local_rank, comm.local_size = rank, 2, rank, 2
    seen = {}
    comm.comm = SimpleNamespace(allgather=lambda value: seen.setdefault("gathered", [placement[0], value]))
    monkeypatch.setattr(distributed.NcclAllreduce, "connect",
                        classmethod(lambda cls, c, cp, own_gpu: seen.setdefault("own_gpu", own_gpu)))
    comm.use(SimpleNamespace(name="cupy", xp=cupy))
    assert seen == {"gathered": placement, "own_gpu": own_gpu}


def test_a_checkpoint_of_weights_gone_bad_on_one_rank_stops_every_rank_alike():
    # Trainer.save checks the weights for NaN; if only rank 1's had gone bad and it stopped on that
    # alone, rank 0 would wait for it in the next collective forever
    from types import SimpleNamespace

    def rank_main(comm):
        tinyres.manual_seed(0)
        model = tinyres.nn.Linear(3, 2)
        if comm.rank == 1:
            model.weight.data[0, 0] = np.nan
        optimizer = tinyres.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        trainer = SimpleNamespace(model=model, optimizer=optimizer, comm=comm, iteration=7)
        with pytest.raises(distributed.RanksDiffer, match="at iteration 7, the weights of rank 1 differ"):
            train.Trainer.save(trainer)

    ThreadRanks(2).run(rank_main)


def test_synchronized_batch_norm_on_two_ranks_computes_what_one_process_computes(backend):
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((8, 3, 4, 5)) * 2 + 1, rng.standard_normal((8, 3, 4, 5))
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)

    def forward_backward(x, g, comm=None):
        xt = tensor(backend, x, requires_grad=True)
        weight, bias = tensor(backend, gamma, requires_grad=True), tensor(backend, beta, requires_grad=True)
        running_mean, running_var = tensor(backend, np.zeros(3)).data, tensor(backend, np.ones(3)).data
        y = batch_norm(xt, running_mean, running_var, weight, bias, training=True, comm=comm)
        (y * tensor(backend, g)).sum().backward()
        return [host(a) for a in (y.data, xt.grad, weight.grad, bias.grad, running_mean, running_var)]

    whole = forward_backward(x, g)
    halves = ThreadRanks(2).run(lambda comm: forward_backward(x[4 * comm.rank : 4 * comm.rank + 4], g[4 * comm.rank : 4 * comm.rank + 4], comm))
    (y0, dx0, dgamma0, dbeta0, mean0, var0), (y1, dx1, dgamma1, dbeta1, mean1, var1) = halves
    y, dx, dgamma, dbeta, running_mean, running_var = whole
    np.testing.assert_allclose(np.concatenate([y0, y1]), y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.concatenate([dx0, dx1]), dx, rtol=1e-12, atol=1e-12)
    # each rank returns its own parameter gradients: the trainer adds (averages) them afterwards
    np.testing.assert_allclose(dgamma0 + dgamma1, dgamma, rtol=1e-12)
    np.testing.assert_allclose(dbeta0 + dbeta1, dbeta, rtol=1e-12)
    for rank_mean, rank_var in [(mean0, var0), (mean1, var1)]:  # the whole batch's, on every rank
        np.testing.assert_allclose(rank_mean, running_mean, rtol=1e-12)
        np.testing.assert_allclose(rank_var, running_var, rtol=1e-12)


def test_synchronized_batch_norm_meets_the_other_ranks_twice_per_layer_and_step(backend):
    # every collective is a point where each rank waits for the slowest: one in forward (the
    # statistics), one in backward (dbeta and dgamma)
    ranks = ThreadRanks(2)
    rng = np.random.default_rng(3)
    x, g = rng.standard_normal((4, 3, 2, 2)), rng.standard_normal((4, 3, 2, 2))

    def rank_main(comm):
        xt = tensor(backend, x, requires_grad=True)
        weight, bias = tensor(backend, np.ones(3), requires_grad=True), tensor(backend, np.zeros(3), requires_grad=True)
        y = batch_norm(xt, None, None, weight, bias, training=True, comm=comm)
        calls_in_forward = ranks.allreduces
        (y * tensor(backend, g)).sum().backward()
        return calls_in_forward

    assert ranks.run(rank_main)[0] == 1
    assert ranks.allreduces == 2


def test_global_statistics_of_unequal_shares_with_a_large_mean_keep_float32_precision(backend):
    # ranks holding 3, 40 and 17 values per channel, mean 1000 against a std of 0.5: the naive
    # sum(x^2)/M - mean^2 in float32 would lose the variance to cancellation (its error ~1e-4 of
    # 1e6); combining each rank's mean and squared deviations keeps float32's own precision
    rng = np.random.default_rng(4)
    shares = [rng.standard_normal((2, m)) * [[0.5], [2.0]] + [[1000.0], [-3.0]] for m in (3, 40, 17)]
    whole = np.concatenate(shares, axis=1)
    ranks = ThreadRanks(3)
    results = ranks.run(lambda comm: [host(a) for a in global_statistics(tensor(backend, shares[comm.rank], dtype="float32").data, comm)])
    assert ranks.allreduces == 1
    for mean, var, m in results:
        assert float(m) == 60
        np.testing.assert_allclose(mean.reshape(-1), whole.mean(axis=1), rtol=1e-6)
        np.testing.assert_allclose(var.reshape(-1), whole.var(axis=1), rtol=1e-4)
    for mean, var, _ in results[1:]:  # the same bits on every rank: running statistics stay equal
        np.testing.assert_array_equal(mean, results[0][0])
        np.testing.assert_array_equal(var, results[0][1])


@given(st.lists(st.integers(1, 9), min_size=1, max_size=4), st.floats(-100, 100), st.integers(0, 2**32 - 1))
def test_global_statistics_of_any_split_are_those_of_the_whole(counts, offset, seed):
    # any number of ranks holding any number of values: the whole matrix's mean and (biased)
    # variance, on every rank
    rng = np.random.default_rng(seed)
    whole = rng.standard_normal((3, sum(counts))) + offset
    shares = np.split(whole, np.cumsum(counts)[:-1], axis=1)
    results = ThreadRanks(len(counts)).run(lambda comm: global_statistics(shares[comm.rank], comm))
    for mean, var, m in results:
        assert float(m) == sum(counts)
        np.testing.assert_allclose(mean.reshape(-1), whole.mean(axis=1), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(var.reshape(-1), whole.var(axis=1), rtol=1e-10, atol=1e-12)


def test_batch_norm_with_a_communicator_of_one_is_the_local_op_bit_for_bit(backend):
    rng = np.random.default_rng(1)
    x = tensor(backend, rng.standard_normal((4, 3, 5, 5)), dtype="float32")
    weight, bias = tensor(backend, np.ones(3), dtype="float32"), tensor(backend, np.zeros(3), dtype="float32")
    plain = batch_norm(x, None, None, weight, bias, training=True)
    alone = batch_norm(x, None, None, weight, bias, training=True, comm=distributed.Communicator())
    np.testing.assert_array_equal(host(alone.data), host(plain.data))


# ----- the sharded loader -----------------------------------------------------------------------
def small_loader(backend, rank=0, ranks=1, n=20, batch_size=8, **options):
    images = np.random.default_rng(7).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    options = {"augment": True, "shuffle": True, "seed": 5, "drop_last": True, **options}
    return Loader(images, np.arange(n) % 10, batch_size, backend, pixel_mean(images), rank=rank, ranks=ranks, **options), images


def test_one_rank_gets_exactly_the_batches_the_loader_always_gave():
    # SHA-256 of two epochs of batches from the loader as it was before sharding (commit b212fae):
    # runs started then are resumed now, and must see the same images, bit for bit
    loader, _ = small_loader("numpy")
    digest = hashlib.sha256()
    for epoch in (0, 1):
        for x, y in loader.epoch(epoch):
            digest.update(x.numpy().tobytes())
            digest.update(np.asarray(y).tobytes())
    assert digest.hexdigest() == "5d7f8ef327d24b63d4aa85ef367d9bcd72141958f4c1a9f22aca582afa2ab5c7"


def test_augmentation_is_drawn_for_the_global_batch_in_the_documented_order():
    loader, images = small_loader("numpy", rank=1, ranks=2)
    padded = np.pad(images / np.float32(255) - pixel_mean(images), ((0, 0), (0, 0), (4, 4), (4, 4)))
    order = np.random.default_rng([5, 3]).permutation(20)
    for b, (x, y) in enumerate(loader.epoch(3)):
        rng = np.random.default_rng([5, 3, b])  # as it always was: top and left, then the flips
        top, left = rng.integers(0, 9, size=(2, 8))
        flip = rng.random(8) < 0.5
        for i in range(4, 8):  # rank 1 of 2: the second half of each batch of 8
            crop = padded[order[8 * b + i], :, top[i] : top[i] + 32, left[i] : left[i] + 32]
            np.testing.assert_allclose(x.numpy()[i - 4], crop[:, :, ::-1] if flip[i] else crop, atol=1e-6)
            assert y[i - 4] == order[8 * b + i] % 10


def test_the_ranks_parts_of_a_batch_make_up_the_one_process_batch(backend):
    whole, _ = small_loader(backend)
    for ranks in (2, 4):
        parts = [small_loader(backend, rank, ranks)[0] for rank in range(ranks)]
        for epoch in (0, 1):
            for batch, *shards in zip(whole.epoch(epoch), *(p.epoch(epoch) for p in parts)):
                assert [len(y) for _, y in shards] == [8 // ranks] * ranks
                np.testing.assert_array_equal(np.concatenate([x.numpy() for x, _ in shards]), batch[0].numpy())
                np.testing.assert_array_equal(np.concatenate([host(y) for _, y in shards]), host(batch[1]))


def test_evaluation_over_uneven_parts_sees_every_image_once_and_adds_up_to_one_process(monkeypatch):
    from tinyres.evaluate import evaluate

    # grad mode is one flag per process, and the rank threads' no_grad blocks overlap: put it back after
    monkeypatch.setattr(tinyres.autograd, "_grad_enabled", True)
    from tinyres.models import cifar_resnet

    def loader(rank=0, ranks=1):  # 10 images in batches of 4, 4, 2: over 3 ranks 1+1+2, 1+1+2, 0+1+1
        return small_loader("numpy", rank, ranks, n=10, batch_size=4, augment=False, shuffle=False, drop_last=False, dtype="float64")[0]

    parts = [loader(rank, 3) for rank in range(3)]
    labels = np.concatenate([y for p in parts for _, y in p.epoch()])
    assert sorted(labels.tolist()) == sorted((np.arange(10) % 10).tolist())
    tinyres.manual_seed(0)
    model = cifar_resnet(8).astype("float64")
    alone = evaluate(model, loader())
    for loss, error in ThreadRanks(3).run(lambda comm: evaluate(model, parts[comm.rank], comm)):
        assert loss == pytest.approx(alone[0], rel=1e-12) and error == alone[1]
    with pytest.raises(ValueError, match="rank must be between 0 and ranks - 1 = 1, got 2"):
        small_loader("numpy", 2, 2)


# ----- whole runs under mpiexec -n 2 ------------------------------------------------------------
def write_cifar(root):
    """A small CIFAR-10 in the official binary layout: 48 training and 24 test images."""
    folder = root / cifar10.FOLDER
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for name in cifar10.TRAIN_FILES + cifar10.TEST_FILES:
        cifar10.write_batch(str(folder / name), rng.integers(0, 256, (24, 3, 32, 32), dtype=np.uint8), np.arange(24) % 10)
    return root


def small_run(root, out, *extra):
    """Arguments of a 2-epoch-ish run of ResNet-8 on the small data: 6 batches of 8 per epoch."""
    return ["--depth", "8", "--subset", "48", "--batch-size", "8", "--no-progress", "--test-subset", "12",
            "--data-dir", str(root), "--out", str(root / out), *extra]


def start_ranks(args, ranks=2):
    """The job, in a session of its own so that finish() can end all of it."""
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([MPIEXEC, "-n", str(ranks), sys.executable, "-m", "tinyres.train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(job, timeout):
    """The job's output once it has ended; a job still running after ``timeout`` seconds (a hang:
    the failure some of these tests look for) is killed with every process it started, so a failed
    test leaves no rank behind spinning in a collective, then the test fails."""
    try:
        return job.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        output = job.communicate()[0]
        pytest.fail(f"the mpiexec job still ran after {timeout} s (killed, with its ranks):\n{output}")


def train_on_ranks(args, ranks=2):
    job = start_ranks(args, ranks)
    output = finish(job, 300)
    assert job.returncode == 0, output
    return output


def weights(root, out):
    arrays, meta = checkpoint.load(str(root / out / "checkpoint.npz"))
    return arrays, meta["iteration"]


def assert_same_run(a, b, rtol=1e-8):
    """Weights, running statistics and momentum buffers of two checkpoints agree to ``rtol``
    (relative to each array's largest value); rtol=0: bit for bit."""
    (a, iteration_a), (b, iteration_b) = a, b
    assert iteration_a == iteration_b and a.keys() == b.keys()
    assert any(k.startswith("optimizer.velocity") for k in a) and any(k.endswith("running_var") for k in a)
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=rtol, atol=rtol * np.abs(a[name]).max(), err_msg=name)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    return write_cifar(tmp_path_factory.mktemp("cifar"))


@needs_mpi
def test_two_ranks_with_synchronized_batch_norm_train_what_one_process_trains(cifar):
    run = ("--iterations", "20", "--eval-every", "10", "--dtype", "float64")
    output = train_on_ranks(small_run(cifar, "two", *run, "--sync-bn"))
    assert output.count("done: best test error") == 1 and "x 2 processes (synchronized batch norm)" in output  # rank 0 alone prints
    assert train.main(small_run(cifar, "one", *run)) == 0
    assert_same_run(weights(cifar, "one"), weights(cifar, "two"))
    one, two = (checkpoint.read_json(str(cifar / out / "config.json")) for out in ("one", "two"))
    assert one == {**two, "out": one["out"]}


@needs_mpi
def test_two_ranks_with_per_rank_batch_norm_train_what_half_batch_normalisation_trains(cifar, monkeypatch):
    run = ("--iterations", "20", "--eval-every", "10", "--dtype", "float64")
    train_on_ranks(small_run(cifar, "per-rank", *run, "--no-sync-bn"))

    def halves_step(self, images, labels):
        """One process, each half of the batch normalised on its own: the halves go through the
        network separately from the same running statistics, which are then averaged (as the
        ranks average theirs); the loss is the mean of the halves' mean losses."""
        self.step_lr = self.optimizer.lr
        buffers = [b for _, b in self.model.named_buffers()]
        start = [b.copy() for b in buffers]
        losses, after = [], []
        for half in (slice(0, 4), slice(4, 8)):
            for b, s in zip(buffers, start):
                b[...] = s
            losses.append(cross_entropy(self.model(tinyres.Tensor(images.data[half], dtype="float64")), labels[half]))
            after.append([b.copy() for b in buffers])
        for b, first, second in zip(buffers, *after):
            b[...] = (first + second) / 2
        loss = (losses[0] + losses[1]) * 0.5
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item(), 0

    monkeypatch.setattr(train.Trainer, "step", halves_step)
    assert train.main(small_run(cifar, "halves", *run)) == 0
    assert_same_run(weights(cifar, "halves"), weights(cifar, "per-rank"))


@needs_mpi
def test_a_killed_rank_ends_the_job_and_the_run_resumes_to_the_uninterrupted_weights(cifar):
    run = ("--iterations", "40", "--eval-every", "2")
    job = start_ranks(small_run(cifar, "killed", *run))
    ranks = {}
    while len(ranks) < 2 and job.poll() is None:
        time.sleep(0.01)
        ranks = rank_processes(str(cifar / "killed"))
    assert len(ranks) == 2, finish(job, 60)
    evaluated = cifar / "killed" / "metrics.csv"  # the first evaluation's row, after its checkpoint
    while not evaluated.exists() and job.poll() is None:
        time.sleep(0.01)
    os.kill(ranks[1], signal.SIGKILL)
    killed = time.monotonic()
    output = finish(job, 60)
    assert job.returncode != 0 and time.monotonic() - killed < 30, output
    stopped_at = weights(cifar, "killed")[1]  # the last checkpoint loads
    assert 2 <= stopped_at < 40, f"the kill came too late to test anything (checkpoint at {stopped_at})"
    output = train_on_ranks(["--out", str(cifar / "killed"), "--resume", "--no-progress"])
    assert f"resumed {cifar / 'killed'} at iteration {stopped_at}" in output
    train_on_ranks(small_run(cifar, "uninterrupted", *run))
    assert_same_run(weights(cifar, "uninterrupted"), weights(cifar, "killed"), rtol=0)


def rank_processes(out):
    """{rank: pid} of the training processes writing to ``out`` (found in /proc)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().split(b"\0")
            with open(f"/proc/{pid}/environ", "rb") as f:
                environment = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
        except OSError:
            continue
        if b"tinyres.train" in command and out.encode() in command and b"PMI_RANK" in environment:
            found[int(environment[b"PMI_RANK"])] = int(pid)
    return found


@needs_mpi
def test_a_run_resumes_with_another_number_of_ranks(cifar):
    run = ("--iterations", "12", "--eval-every", "6", "--dtype", "float64")
    train_on_ranks(small_run(cifar, "two-then-one", *run, "--stop-after-minutes", "0"))  # 2 ranks: 1 step, then stop
    assert weights(cifar, "two-then-one")[1] == 1
    assert train.main(["--out", str(cifar / "two-then-one"), "--resume", "--no-progress"]) == 0  # one process finishes it
    assert train.main(small_run(cifar, "one-throughout", *run)) == 0
    assert_same_run(weights(cifar, "one-throughout"), weights(cifar, "two-then-one"))


@needs_mpi
def test_a_batch_that_does_not_split_over_the_ranks_is_one_clear_error(cifar):
    job = start_ranks(small_run(cifar, "uneven", "--batch-size", "9", "--iterations", "1"))
    output = finish(job, 120)
    assert job.returncode == 2, output
    assert output.count("error: a mini-batch of 9 images does not split evenly over 2 processes; choose a --batch-size divisible by 2") == 1, output
    assert "MPI_Abort" not in output  # every rank meets it and exits: no abort to cut the message off
    assert "Traceback" not in output and not (cifar / "uneven").exists()


@needs_mpi
@pytest.mark.parametrize("extra, message", [
    (("--iterations", "x"), "argument --iterations: invalid int value: 'x' (python -m tinyres.train --help lists the options)"),
    (("--subset", "600", "--iterations", "1"), "subset must be between 1 and 120 images, got 600"),
], ids=["mistyped-flag", "subset-too-large"])
def test_a_mistake_every_rank_meets_is_printed_once_without_an_abort(cifar, extra, message):
    args = [a for a in small_run(cifar, "mistake") if a not in ("--subset", "48")] + list(extra)
    job = start_ranks(args)
    output = finish(job, 120)
    assert job.returncode == 2, output
    assert output.count(message) == 1, output
    assert "MPI_Abort" not in output and "Traceback" not in output, output


@needs_mpi
def test_resume_without_out_under_mpiexec_is_printed_once_without_an_abort(cifar):
    job = start_ranks(["--depth", "8", "--resume", "--no-progress"])
    output = finish(job, 120)
    assert job.returncode == 2, output
    assert output.count("error: --resume needs --out RUN_DIR") == 1 and "MPI_Abort" not in output, output


@needs_mpi
def test_collectives_on_the_strict_backend_go_through_host_buffers():
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([MPIEXEC, "-n", "2", sys.executable, os.path.join(ROOT, "tests", "distributed_worker.py")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(re.findall(r"rank-\d-ok", result.stdout)) == ["rank-0-ok", "rank-1-ok"], result.stdout + result.stderr  # the ranks' lines may interleave
