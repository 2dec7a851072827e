"""Worked solution to chapter 10, exercise 5: top-k error on any backend, with the array module
of the scores and only the final number copied to the host."""


def top_k_error(logits, labels, k):
    xp = logits.xp  # NumPy, CuPy or the strict backend: wherever the scores live
    top = xp.argsort(-logits.data, axis=1)[:, :k]  # the classes of the k largest scores of each row
    hit = (top == labels[:, None]).any(axis=1)
    return float(1.0 - hit.mean())  # one number crosses to the host
