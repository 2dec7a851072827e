"""Data parallelism: the processes of one training run, and what they say to each other.

    mpiexec -n 2 python -m tinyres.train --depth 56

starts two processes, ranks 0 and 1. Each builds the same network from the same seed, takes its
half of every mini-batch of 128 and computes gradients on it. One Allreduce then sums the
gradients of all ranks (every rank receives the sum), each rank divides by the number of ranks,
and every rank applies the same update to the same weights: the ranks stay equal by
construction, and the trainer checks that they do at every evaluation.

The trainer talks to a communicator and never asks whether it is distributed. Without mpiexec,
:func:`world` is the single-process stand-in :class:`Communicator`, whose collectives hand back
what they are given (and mpi4py is never imported). Under mpiexec with several processes it is an
:class:`MPICommunicator` over mpi4py's ``COMM_WORLD``. The collectives, which every rank must call
in the same order:

    allreduce(array)    sum of a backend array over the ranks, in place
    broadcast(value)    rank 0's Python value, on every rank
    allgather(value)    [rank 0's value, rank 1's value, ...], on every rank

and, built on them: ``average`` (many arrays, one Allreduce over one contiguous buffer), ``agree``
(when to checkpoint and when to stop, one small allgather per step), ``check_identical`` (a
checksum of the weights).

Failures. A collective waits for every rank, forever. A rank that dies (kill -9, out of memory)
is noticed by mpiexec, which then ends the others; a rank that stops with an error is still alive
as far as mpiexec knows, so :func:`run` ends the job with MPI_Abort for it.

GPUs. With CuPy, each rank uses GPU ``local rank % number of GPUs it sees``. Allreduce runs on the
GPUs through NCCL (CuPy's ``cupy.cuda.nccl``) when every rank has it and each has a GPU of its own;
otherwise it copies to a host buffer and uses MPI. Besides backend.py, this is the one file that
names CuPy: NCCL is CuPy's, not an array operation.
"""

import contextlib
import hashlib
import socket
import sys
import time
import traceback

import numpy as np

from tinyres import threads
from tinyres.backend import backend_of
from tinyres.cli import UsageError
from tinyres.nn.batch_norm import BatchNorm2d

# how a launcher tells each process the number of processes: MPICH and Intel MPI (and Slurm's
# srun --mpi=pmi2) set PMI_SIZE, Open MPI sets OMPI_COMM_WORLD_SIZE
LAUNCHED_PROCESSES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


class DistributedUnavailable(RuntimeError):
    """mpiexec started several processes, but they cannot talk to each other."""


class RanksDiffer(RuntimeError):
    """The ranks' weights are no longer identical."""


class BatchDoesNotSplit(ValueError):
    """A mini-batch that the ranks cannot share equally. Every rank finds it, at the same point:
    the batch size and the number of training images are the same on all of them."""


class Communicator:
    """One process on its own: rank 0 of 1. Its collectives return what they are given.

    :class:`MPICommunicator` overrides the three collectives (and ``use``, ``abort``); the rest
    is built on them and shared.
    """

    rank, size = 0, 1  # this process's number among all, and how many there are
    local_rank, local_size = 0, 1  # the same among the processes on this machine

    def allreduce(self, array):
        """Sum ``array`` (an array of any backend) over the ranks, in place; returns it."""
        return array

    def broadcast(self, value):
        """Rank 0's ``value`` (any picklable Python object), on every rank."""
        return value

    def allgather(self, value):
        """Every rank's ``value``, in rank order, on every rank."""
        return [value]

    def use(self, backend):
        """Get ready for arrays on ``backend`` (under mpiexec: choose this rank's GPU)."""

    def abort(self, code):
        """End every rank of the job now, with exit status ``code``."""
        sys.exit(code)

    # ----- built on the collectives -----------------------------------------------------------
    def average(self, arrays):
        """Replace each array by its mean over the ranks, in place, with ONE Allreduce over one
        contiguous buffer (a call per array would pay the collective's latency once per
        parameter). The arrays share one backend and one dtype."""
        if self.size == 1 or not arrays:
            return
        dtypes = sorted({str(a.dtype) for a in arrays})
        if len(dtypes) > 1:
            raise ValueError(f"average: the arrays must share one dtype, got {', '.join(dtypes)}")
        xp = backend_of(arrays[0]).xp
        buffer = self.allreduce(xp.concatenate([a.reshape(-1) for a in arrays]))
        buffer /= self.size
        start = 0
        for a in arrays:
            a[...] = buffer[start : start + a.size].reshape(a.shape)
            start += a.size

    def agree(self, *requests):
        """What every rank does about each of its ``requests`` (each None, or a reason to act,
        such as a reason to stop): a tuple holding, for each request, the reason of the first rank
        that has one. Ranks see Ctrl-C and their clocks at different moments; deciding together
        makes them all act after the same step. One collective, however many requests."""
        gathered = self.allgather(requests)  # [rank 0's requests, rank 1's, ...]
        return tuple(next((reason for reason in column if reason is not None), None) for column in zip(*gathered))

    def check_identical(self, arrays, when=""):
        """Raise :class:`RanksDiffer` unless every rank holds the same bytes in ``arrays`` (a dict
        of host NumPy arrays): each rank hashes its arrays and the digests are compared. ``when``
        (such as "at iteration 500") goes into the message."""
        if self.size == 1:
            return
        digest = hashlib.sha256()
        for name in sorted(arrays):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(arrays[name]).tobytes())
        digests = self.allgather(digest.hexdigest())
        differ = [rank for rank, d in enumerate(digests) if d != digests[0]]
        if differ:
            raise RanksDiffer(
                f"{when + ', ' if when else ''}the weights of rank {', '.join(map(str, differ))} differ from "
                "rank 0's, which synchronous training never does by itself: the ranks run different code or "
                "libraries, or a transfer was corrupted. Check that every host has the same environment, then "
                "resume from the last checkpoint")

    @contextlib.contextmanager
    def rank_zero_first(self):
        """Rank 0 runs the block first, then the other ranks (rank 0 may download data that the
        others then find in place). If the block fails on rank 0, every rank raises its error
        rather than wait for it."""
        if self.rank == 0:
            try:
                yield
            except Exception as error:
                self.allgather(error)  # the barrier the others wait at, with the news
                raise
            self.allgather(None)
        else:
            failed = self.allgather(None)[0]
            if failed is not None:
                raise failed
            yield


class MPICommunicator(Communicator):
    """The processes mpiexec started, through mpi4py: MPI on host buffers, or NCCL on GPUs."""

    def __init__(self):
        try:
            from mpi4py import MPI
        except ImportError:
            raise DistributedUnavailable(
                f"mpiexec started {launched_processes()} processes, but mpi4py is not installed; "
                "install it and MPICH with pip install -e '.[mpi]'") from None
        self.MPI, self.comm = MPI, MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        if self.size != launched_processes():
            raise DistributedUnavailable(
                f"mpiexec started {launched_processes()} processes, but MPI counts {self.size}: this "
                "mpiexec belongs to another MPI than the one mpi4py uses; run the mpiexec installed "
                "with it (pip install -e '.[mpi]' puts MPICH's beside python)")
        on_this_machine = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_rank, self.local_size = on_this_machine.Get_rank(), on_this_machine.Get_size()
        on_this_machine.Free()
        self.nccl = None

    def allreduce(self, array):
        if self.nccl is not None and self.nccl.takes(array):
            return self.nccl.allreduce(array)
        backend = backend_of(array)
        host = backend.to_numpy(array)  # a host copy (one transfer from a GPU), reduced in place
        self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
        array[...] = backend.asarray(host)
        return array

    def broadcast(self, value):
        return self.comm.bcast(value, root=0)

    def allgather(self, value):
        return self.comm.allgather(value)

    def use(self, backend):
        if backend.name != "cupy":
            return
        cupy = backend.xp
        device = self.local_rank % cupy.cuda.runtime.getDeviceCount()
        cupy.cuda.Device(device).use()
        # NCCL wants a GPU per rank. Compare the physical GPUs, not how many each rank sees: a
        # launcher may show every rank only its own (CUDA_VISIBLE_DEVICES), as device 0 of 1.
        placement = self.allgather((socket.gethostname(), cupy.cuda.runtime.deviceGetPCIBusId(device)))
        self.nccl = NcclAllreduce.connect(self, cupy, own_gpu=len(set(placement)) == self.size)

    def abort(self, code):
        self.comm.Abort(code)


class NcclAllreduce:
    """Sums of CuPy arrays over the ranks, GPU to GPU (NCCL), without copies to the host."""

    def __init__(self, cupy, nccl, communicator):
        self.cupy, self.nccl, self.communicator = cupy, nccl, communicator
        self.types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}

    @classmethod
    def connect(cls, comm, cupy, own_gpu):
        """NCCL between the ranks of ``comm`` if every rank can use it (NCCL wants a GPU per rank),
        else None: then ``comm`` reduces through host buffers."""
        try:
            from cupy.cuda import nccl

            usable = own_gpu and getattr(nccl, "available", True)
        except ImportError:
            nccl, usable = None, False
        if not all(comm.allgather(usable)):  # all ranks or none
            return None
        unique_id = comm.broadcast(nccl.get_unique_id() if comm.rank == 0 else None)
        return cls(cupy, nccl, nccl.NcclCommunicator(comm.size, unique_id, comm.rank))

    def takes(self, array):
        return isinstance(array, self.cupy.ndarray) and array.dtype in self.types

    def allreduce(self, array):
        buffer = self.cupy.ascontiguousarray(array)
        self.communicator.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size, self.types[buffer.dtype],
                                    self.nccl.NCCL_SUM, self.cupy.cuda.get_current_stream().ptr)
        if buffer is not array:
            array[...] = buffer
        return array


def launched_processes():
    """How many processes the launcher started (1 without one), from its environment."""
    return threads.process_count(LAUNCHED_PROCESSES)


_world = None


def world():
    """This process's communicator: the stand-in alone, MPI's under mpiexec with several processes.
    Made once; raises :class:`DistributedUnavailable` when mpiexec started processes that cannot
    talk to each other."""
    global _world
    if _world is None:
        _world = Communicator() if launched_processes() == 1 else MPICommunicator()
    return _world


def synchronize_batch_norm(model, comm):
    """Make every batch-norm layer of ``model`` compute its statistics over the images of all
    ranks of ``comm`` (see ``tinyres.nn.functional.batch_norm``); returns the model."""
    for module in model.modules():
        if isinstance(module, BatchNorm2d):
            module.comm = comm
    return model


def run(main):
    """Call ``main()`` on this rank and return its exit status.

    Under mpiexec, a rank that fails (an exception, or SystemExit with an error) ends the whole job
    with MPI_Abort: the other ranks would otherwise wait for it in their next collective forever.
    An error that may be this rank's alone is reported once, by rank 0: the others wait a second
    before reporting theirs, and rank 0's abort normally ends them first. An error raised with
    ``every_rank`` (a UsageError that every rank meets at the same point) needs no abort: each
    rank exits with it, and the job ends with its status and rank 0's message intact.
    """
    try:
        comm = world()
    except DistributedUnavailable as error:
        raise SystemExit(f"error: {error}") from None
    if comm.size == 1:
        return main()
    try:
        return main()
    except BaseException as error:  # noqa: BLE001  (every failure must end the job)
        code = error.code if isinstance(error, SystemExit) else 130 if isinstance(error, KeyboardInterrupt) else 1
        if code in (0, None) or getattr(error, "every_rank", False):
            raise
        if comm.rank != 0:
            time.sleep(1)
        if isinstance(code, str):  # SystemExit("error: ...")
            print(code, file=sys.stderr)
        elif isinstance(error, KeyboardInterrupt):
            print(f"rank {comm.rank}: interrupted", file=sys.stderr)
        elif isinstance(error, UsageError):  # rank 0's was printed by cli.reporting_usage_errors
            if comm.rank != 0:  # (data missing on one host only, say)
                print(f"rank {comm.rank}: {error}", file=sys.stderr)
        elif not isinstance(error, SystemExit):  # (a SystemExit with a number has said why already)
            traceback.print_exc()
        sys.stderr.flush()
        comm.abort(code if isinstance(code, int) else 1)
