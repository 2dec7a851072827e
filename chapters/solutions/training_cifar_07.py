"""Worked solution to chapter 7, exercise 4: the learning rate of every step of a run of
``python -m tinyres.train``, in closed form: the paper's divisions by 10 at 50% and 75% of the
run and, given the training errors, the warm-up at a tenth of the rate."""

import numpy as np


def paper_lrs(iterations, batch_errors=None, lr=0.1):
    # tinyres.train.default_milestones: 50% and 75% of the run, rounded down (and at least 1)
    first, second = max(1, iterations // 2), max(1, iterations * 3 // 4)
    warming_up = batch_errors is not None
    rates = []
    for t in range(iterations):
        rate = lr * 0.1 ** ((t >= first) + (t >= second))  # step t runs at the lower rate from t = milestone
        rates.append(rate * 0.1 if warming_up else rate)
        # after step t: its error joins the last 50; the warm-up ends (for good) once their mean is below 80%
        if warming_up and t >= 49 and np.mean(batch_errors[t - 49 : t + 1]) < 0.8:
            warming_up = False
    return np.array(rates)
