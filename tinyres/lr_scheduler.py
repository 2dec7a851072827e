"""Learning-rate schedules, as in PyTorch's ``torch.optim.lr_scheduler``: a scheduler owns the
learning rates of an optimizer's parameter groups, and ``scheduler.step()``, called after each
``optimizer.step()``, sets the rates of the next step.

    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    scheduler = MultiStepLR(optimizer, milestones=[32000, 48000])   # the paper's CIFAR-10 schedule
    for images, labels in batches:
        ...
        optimizer.step()
        scheduler.step()

The paper counts iterations (mini-batches), so here ``step()`` is called once per iteration and
milestones are iteration numbers; the count keeps PyTorch's name, ``last_epoch``.

    MultiStepLR        lr = base_lr * gamma ** (milestones reached)                  (section 4.2)
    WarmupUntilError   another schedule's lr * factor until the training error is below a
                       threshold (section 4.2: "we use 0.01 to warm up the training until the
                       training error is below 80% ... and then go back to 0.1")

The state of a scheduler (``state_dict()``) is plain Python values, JSON-able, so it can go in a
checkpoint's header; ``load_state_dict`` puts the learning rates it implies back into the
optimizer.
"""

from collections import deque

import numpy as np


class MultiStepLR:
    """The step schedule: each group's learning rate is its initial one times ``gamma`` for
    every milestone reached,

        lr(t) = base_lr * gamma ** (number of milestones m with t >= m),

    where t = ``last_epoch`` counts the calls of :meth:`step` (PyTorch's closed form; a
    milestone listed twice counts twice). The rate of step t is set when t is reached, so at
    construction the optimizer gets lr(0) = base_lr. Every step sets the rate from the base rates,
    so a rate you change by hand lasts until the next step (PyTorch's ``step`` instead multiplies
    the current rate at a milestone, keeping such a change).

    Args:
        optimizer: an optimizer with ``param_groups`` (``tinyres.optim.SGD``).
        milestones: iteration numbers >= 1, in any order.
        gamma: the factor at each milestone (0.1 in the paper: "divide it by 10").
    """

    def __init__(self, optimizer, milestones, gamma=0.1):
        if not hasattr(optimizer, "param_groups"):
            raise TypeError(f"{type(self).__name__}: expected an optimizer with param_groups (tinyres.optim.SGD), "
                            f"got {type(optimizer).__name__}")
        milestones = list(milestones)
        if not all(isinstance(m, (int, np.integer)) and m >= 1 for m in milestones):
            raise ValueError(f"MultiStepLR: milestones must be iteration numbers >= 1, such as [32000, 48000]; got {milestones}")
        self.optimizer, self.milestones, self.gamma = optimizer, sorted(int(m) for m in milestones), float(gamma)
        # the rates to scale, kept in the groups as PyTorch does (a second scheduler starts from them too)
        self.base_lrs = [group.setdefault("initial_lr", group["lr"]) for group in optimizer.param_groups]
        self.last_epoch = -1
        self.step()

    def lr_at(self, t):
        """The learning rate of every group at step ``t``."""
        passed = sum(t >= m for m in self.milestones)
        return [base_lr * self.gamma ** passed for base_lr in self.base_lrs]

    def step(self):
        """Count one step and set the rates of the next one."""
        self.last_epoch += 1
        self._set(self.lr_at(self.last_epoch))

    def get_last_lr(self):
        """The learning rates this scheduler set last, one per parameter group."""
        return list(self._last_lr)

    def _set(self, lrs):
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs

    def state_dict(self):
        return {"milestones": list(self.milestones), "gamma": self.gamma, "base_lrs": list(self.base_lrs),
                "last_epoch": self.last_epoch}

    def load_state_dict(self, state):
        """Continue where :meth:`state_dict` was taken, and set the optimizer's rates to match."""
        self.milestones, self.gamma = sorted(state["milestones"]), state["gamma"]
        self.base_lrs, self.last_epoch = list(state["base_lrs"]), state["last_epoch"]
        self._set(self.lr_at(self.last_epoch))


class WarmupUntilError:
    """The paper's warm-up for ResNet-110 and deeper: the learning rates of ``schedule`` times
    ``factor`` until the training error, averaged over the last ``window`` mini-batches, is
    below ``error``; from then on ``schedule``'s rates unchanged. No PyTorch scheduler ends on
    the training error, hence the name of its own; ``step`` takes the error of the mini-batch
    just trained on, as ``ReduceLROnPlateau.step`` takes a metric.

    With ``MultiStepLR`` this gives exactly ``tinyres.train``'s schedule (tested)::

        scheduler = WarmupUntilError(MultiStepLR(optimizer, [32000, 48000]))
        ...
        optimizer.step()
        scheduler.step(errors / batch_size)

    Args:
        schedule: the scheduler to warm up (it must not be stepped separately).
        factor: 0.1 in the paper (0.01 for a base rate of 0.1).
        error: the threshold on the averaged training error, 0.8 in the paper.
        window: how many mini-batches the error is averaged over (one lucky batch does not end it).
    """

    def __init__(self, schedule, factor=0.1, error=0.8, window=50):
        if not hasattr(schedule, "get_last_lr"):
            raise TypeError(f"WarmupUntilError: expected a scheduler to warm up, such as MultiStepLR(optimizer, ...); "
                            f"got {type(schedule).__name__}")
        self.schedule, self.optimizer = schedule, schedule.optimizer
        self.factor, self.error, self.window = float(factor), float(error), int(window)
        self.active = True
        self.recent = deque(maxlen=self.window)
        self._apply()

    def step(self, batch_error):
        """Record the training error (0 to 1) of the step just taken, count the step, and set the
        rates of the next one."""
        self.recent.append(float(batch_error))
        if self.active and len(self.recent) == self.window and np.mean(self.recent) < self.error:
            self.active = False
        self.schedule.step()
        self._apply()

    def _apply(self):
        lrs = self.schedule.get_last_lr()
        if self.active:
            lrs = [lr * self.factor for lr in lrs]
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs

    def get_last_lr(self):
        return list(self._last_lr)

    @property
    def last_epoch(self):
        return self.schedule.last_epoch

    def state_dict(self):
        return {"factor": self.factor, "error": self.error, "window": self.window, "active": self.active,
                "recent": list(self.recent), "schedule": self.schedule.state_dict()}

    def load_state_dict(self, state):
        self.factor, self.error, self.window = state["factor"], state["error"], state["window"]
        self.active, self.recent = state["active"], deque(state["recent"], maxlen=self.window)
        self.schedule.load_state_dict(state["schedule"])
        self._apply()
