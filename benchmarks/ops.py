"""Per-op speed on the layer shapes of CIFAR ResNets, tinyres next to PyTorch.

    python benchmarks/ops.py [--batch-size 128] [--backend numpy] [--no-torch]

For each shape: conv2d forward, input gradient, weight gradient; batch norm forward+backward;
ReLU; global average pooling; max and average pooling. Best of --repeat runs, in milliseconds.
Both frameworks run in this process, one after the other for each row.
"""

import tinyres  # noqa: I001  (first: it sets OPENBLAS_THREAD_TIMEOUT before NumPy loads OpenBLAS)

import argparse

import numpy as np

import tinyres.nn.functional as F
from timing import best_ms, set_torch_threads

# (in channels, out channels, size, stride) of the convolutions in a CIFAR ResNet
CONV_SHAPES = [(3, 16, 32, 1), (16, 16, 32, 1), (16, 32, 32, 2), (32, 32, 16, 1), (32, 64, 16, 2), (64, 64, 8, 1)]
MAP_SHAPES = [(16, 32), (32, 16), (64, 8)]


def tinyres_cases(backend, n):
    rng = np.random.default_rng(0)
    cases = {}

    def tensor(shape, grad=True):
        return tinyres.Tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=grad, backend=backend)

    for cin, cout, size, stride in CONV_SHAPES:
        x, w = tensor((n, cin, size, size)), tensor((cout, cin, 3, 3))
        g = backend.asarray(rng.standard_normal((n, cout, size // stride, size // stride)).astype(np.float32))
        g = g.transpose(1, 0, 2, 3).copy().transpose(1, 0, 2, 3)  # channel-major, as gradients arrive
        key = f"conv {cin}->{cout} {size}x{size} s{stride}"

        def forward(x=x, w=w, stride=stride):
            with tinyres.no_grad():
                F.conv2d(x, w, stride=stride, padding=1)

        def input_grad(x=x, w=w, g=g, stride=stride):
            w.requires_grad = False
            F.conv2d(x, w, stride=stride, padding=1).backward(g)
            w.requires_grad = True

        def weight_grad(x=x, w=w, g=g, stride=stride):
            x.requires_grad = False
            F.conv2d(x, w, stride=stride, padding=1).backward(g)
            x.requires_grad = True

        cases[key + " forward"] = forward
        cases[key + " input grad (fwd+bwd)"] = input_grad
        cases[key + " weight grad (fwd+bwd)"] = weight_grad
    for c, size in MAP_SHAPES:
        x = tensor((n, c, size, size))
        x = tinyres.Tensor(x.data.transpose(1, 0, 2, 3).copy().transpose(1, 0, 2, 3), requires_grad=True)
        gamma, beta = tensor((c,)), tensor((c,))
        g = backend.asarray(np.ones((c, n, size, size), np.float32)).transpose(1, 0, 2, 3)
        cases[f"batch_norm {c}x{size}x{size} fwd+bwd"] = lambda x=x, g=g, gamma=gamma, beta=beta: F.batch_norm(x, None, None, gamma, beta, True).backward(g)
        cases[f"relu {c}x{size}x{size} fwd+bwd"] = lambda x=x, g=g: F.relu(x).backward(g)
        cases[f"global_avg_pool {c}x{size}x{size} fwd+bwd"] = lambda x=x: F.global_avg_pool2d(x).sum().backward()
        cases[f"max_pool 3x3 s2 {c}x{size}x{size} fwd+bwd"] = lambda x=x: F.max_pool2d(x, 3, 2, 1).sum().backward()
        cases[f"avg_pool 2x2 {c}x{size}x{size} fwd+bwd"] = lambda x=x: F.avg_pool2d(x, 2).sum().backward()
    return cases


def torch_cases(n, device):
    import torch

    tf = torch.nn.functional
    cases = {}

    def tensor(shape):
        return torch.randn(shape, device=device, requires_grad=True)

    for cin, cout, size, stride in CONV_SHAPES:
        x, w = tensor((n, cin, size, size)), tensor((cout, cin, 3, 3))
        g = torch.randn((n, cout, size // stride, size // stride), device=device)
        key = f"conv {cin}->{cout} {size}x{size} s{stride}"

        def forward(x=x, w=w, stride=stride):
            with torch.no_grad():
                tf.conv2d(x, w, stride=stride, padding=1)

        def input_grad(x=x, w=w, g=g, stride=stride):
            w.requires_grad_(False)
            tf.conv2d(x, w, stride=stride, padding=1).backward(g)
            w.requires_grad_(True)

        def weight_grad(x=x, w=w, g=g, stride=stride):
            x.requires_grad_(False)
            tf.conv2d(x, w, stride=stride, padding=1).backward(g)
            x.requires_grad_(True)

        cases[key + " forward"] = forward
        cases[key + " input grad (fwd+bwd)"] = input_grad
        cases[key + " weight grad (fwd+bwd)"] = weight_grad
    for c, size in MAP_SHAPES:
        x = tensor((n, c, size, size))
        gamma, beta = tensor((c,)), tensor((c,))
        g = torch.ones((n, c, size, size), device=device)
        cases[f"batch_norm {c}x{size}x{size} fwd+bwd"] = lambda x=x, g=g, gamma=gamma, beta=beta: tf.batch_norm(x, None, None, gamma, beta, True).backward(g)
        cases[f"relu {c}x{size}x{size} fwd+bwd"] = lambda x=x, g=g: tf.relu(x).backward(g)
        cases[f"global_avg_pool {c}x{size}x{size} fwd+bwd"] = lambda x=x: x.mean(dim=(2, 3)).sum().backward()
        cases[f"max_pool 3x3 s2 {c}x{size}x{size} fwd+bwd"] = lambda x=x: tf.max_pool2d(x, 3, 2, 1).sum().backward()
        cases[f"avg_pool 2x2 {c}x{size}x{size} fwd+bwd"] = lambda x=x: tf.avg_pool2d(x, 2).sum().backward()
    return cases


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--filter", default="", help="only rows whose name contains this text")
    args = parser.parse_args()
    backend = tinyres.get_backend(args.backend)
    ours = tinyres_cases(backend, args.batch_size)
    theirs, torch_sync = {}, lambda: None
    if not args.no_torch:
        try:
            import torch

            set_torch_threads()
            device = "cuda" if args.backend == "cupy" else "cpu"
            theirs = torch_cases(args.batch_size, device)
            if device == "cuda":
                torch_sync = torch.cuda.synchronize
        except ImportError:
            print("# torch not installed: tinyres only")
    print(f"# batch {args.batch_size}, backend {args.backend}, best of {args.repeat}, milliseconds")
    print(f"{'op':48s} {'tinyres':>9s} {'torch':>9s} {'ratio':>7s}")
    for name, fn in ours.items():
        if args.filter not in name:
            continue
        mine = best_ms(fn, args.repeat, backend.synchronize)
        row = f"{name:48s} {mine:9.2f}"
        if name in theirs:
            ref = best_ms(theirs[name], args.repeat, torch_sync)
            row += f" {ref:9.2f} {mine / ref:7.2f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
