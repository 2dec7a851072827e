"""How many cores this process keeps busy: all it may run on, or its share of them when mpiexec
started several tinyres processes on this machine.

Two ranks on a 2-core machine that each start a BLAS thread per core run four threads on two
cores, and every matrix product waits for a thread that is not running. So each process takes
``cores it may run on // processes on this machine`` (at least one), for BLAS and for tinyres's
own thread pool (``Backend.parallel_map``).

The number of processes on this machine comes from the launcher's environment:
``MPI_LOCALNRANKS`` (MPICH's mpiexec, Hydra) or ``OMPI_COMM_WORLD_LOCAL_SIZE`` (Open MPI); without
either, one (other launchers, such as Slurm's srun, set neither: there, set the thread count). BLAS libraries read their thread count from the environment once, when NumPy loads
them, so :func:`share_cores` runs from ``tinyres/__init__.py`` before NumPy is imported, and this
file imports nothing but ``os``. A thread count you set yourself (``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS`` or ``MKL_NUM_THREADS``) is left as it is. A launcher that pins each
process to its own cores (``mpiexec -bind-to core:4``) gives fewer cores to start from, and the
share divides them again: at least one thread, never more than the cores the process was given,
but fewer than it could use; set ``OPENBLAS_NUM_THREADS`` to the cores per process then. (The
share cannot tell pinning from a container that offers fewer cores than the machine has, where
not dividing would run too many threads, so it always divides.)
"""

import os

LOCAL_PROCESSES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")  # MPICH (Hydra), Open MPI
BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def process_count(variables):
    """The first positive integer among the environment ``variables`` a launcher sets (1 when
    none is set: no launcher)."""
    for name in variables:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def local_processes():
    """How many processes the launcher started on this machine (1 without a launcher)."""
    return process_count(LOCAL_PROCESSES)


def cores():
    """The cores this process should keep busy: its share of those it may run on."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, available // local_processes())


def share_cores():
    """Set BLAS's thread count to this process's share of the cores, when several processes run
    here and the user set none of the thread variables. Must run before NumPy is imported."""
    if local_processes() > 1 and not any(name in os.environ for name in BLAS_THREADS):
        for name in BLAS_THREADS:
            os.environ[name] = str(cores())
