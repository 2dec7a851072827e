"""What the command-line tools (train, evaluate, plot, report, models.pretrained) share: how they
report a user's mistake."""

import argparse
import sys


class UsageError(SystemExit):
    """A mistake the user can fix: reported as one line, ``error: ...`` naming the problem and the
    fix, with exit status 2 and no traceback.

    ``every_rank``: under mpiexec, every rank meets this same error at the same point, so each can
    simply exit; without it, ``distributed.run`` ends the job with MPI_Abort (which can cut off
    the message on its way to the terminal), as a rank that fails alone must.
    """

    def __init__(self, message, every_rank=False):
        super().__init__(2)
        self.message, self.every_rank = message, every_rank

    def __str__(self):
        return f"error: {self.message}"


def reporting_usage_errors(main):
    """Wrap a tool's ``main`` so that a UsageError is printed to stderr before it exits (once:
    by rank 0 under mpiexec, where every rank meets the same error)."""

    def wrapped(argv=None):
        try:
            return main(argv)
        except UsageError as error:
            from tinyres import distributed

            if distributed.world().rank == 0:
                print(error, file=sys.stderr, flush=True)
            raise

    wrapped.__doc__, wrapped.__name__ = main.__doc__, main.__name__
    return wrapped


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, whose mistakes (an unknown flag, a value of the wrong type) are
    UsageErrors that every rank meets alike: under mpiexec the message is printed once, by rank 0,
    and no rank aborts."""

    def error(self, message):
        raise UsageError(f"{message} ({self.prog} --help lists the options)", every_rank=True)
