"""Worked solution to chapter 11, exercise 1: the count, mean and variance of several parts'
values from each part's (count, mean, sum of squared deviations), as synchronized batch norm
combines the ranks' statistics."""


def combine(parts):
    count = sum(n for n, _, _ in parts)
    mean = sum(n * m for n, m, _ in parts) / count
    # each part's squared deviations from the global mean: its own, plus n (its mean - global mean)^2
    squares = sum(s + n * (m - mean) ** 2 for n, m, s in parts)
    return count, mean, squares / count
