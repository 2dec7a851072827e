"""Is the gap between our ResNet-20 and the paper's tinyres's doing? Train the same recipe in an
implementation that shares no training code with tinyres: PyTorch's network (the twin in
benchmarks/torch_reference.py), its own initial weights, its own reading of the binary files, its
own shuffling, padding, cropping and flipping, torch's SGD and MultiStepLR. Only the data copy (the
same binary files) and the recipe (section 4.2 of the paper) are shared. If this run ends near
tinyres's `cpu-resnet20-16k`, the distance to Table 6 belongs to the recipe at this length and the
data, not to tinyres; if it ends far below, tinyres has a difference to find.

    python results/torch_independent_run.py DATA_DIR OUT [--iterations 16000] [--stop-after-minutes M]

DATA_DIR holds cifar-10-batches-bin/. OUT receives metrics.csv (one row per evaluation),
log.txt (a header per segment: date, machine, versions, command) and checkpoint.pt; run the same
command again to continue from the checkpoint (the batches, crops and flips of each epoch are
drawn from a generator seeded by (seed, epoch), so a resumed run sees what an uninterrupted one
would). Needs torch (a test oracle of this project, never a dependency of tinyres).

The recipe: He-normal initial weights (std sqrt(2 / fan_in)) for the convolutions and the last
layer, batch norm weight 1 and bias 0; per-pixel mean subtraction (pixels scaled to [0, 1]);
4 pixels of zero padding, a random 32x32 crop and a random horizontal flip; batches of 128 drawn
without replacement, the last incomplete batch of an epoch dropped; SGD, momentum 0.9, weight
decay 0.0001 on every parameter, rate 0.1 divided by 10 at 50% and 75% of the run; evaluation on
all 10,000 test images with the running batch-norm statistics.
"""

import argparse
import csv
import datetime
import os
import platform
import shlex
import sys
import time

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
from torch_reference import CifarResNet  # noqa: E402  (the architecture; its forward only)

COLUMNS = ["iteration", "epoch", "lr", "train_loss", "train_error", "test_loss", "test_error", "train_seconds"]
BATCH, PAD = 128, 4


def read_cifar10(folder):
    """(train images, train labels, test images, test labels) from the binary files: each record
    is one label byte and 3072 pixel bytes (red, green, blue planes of 32x32)."""
    def read(names):
        records = np.concatenate([np.fromfile(os.path.join(folder, n), dtype=np.uint8).reshape(-1, 3073) for n in names])
        return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)
    train_x, train_y = read([f"data_batch_{k}.bin" for k in range(1, 6)])
    test_x, test_y = read(["test_batch.bin"])
    return train_x, train_y, test_x, test_y


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def epoch_draws(seed, epoch, n):
    """The order of the training images in `epoch`, and each position's crop offsets and flip."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=g)
    offsets = torch.randint(0, 2 * PAD + 1, (n, 2), generator=g)
    flips = torch.rand(n, generator=g) < 0.5
    return order, offsets, flips


def augmented(images, offsets, flips):
    """Pad each image by PAD zeros, crop 32x32 at its offsets (top, left), flip where told."""
    padded = F.pad(images, (PAD, PAD, PAD, PAD))
    out = torch.stack([padded[k, :, t:t + 32, l:l + 32] for k, (t, l) in enumerate(offsets.tolist())])
    out[flips] = out[flips].flip(-1)
    return out


def evaluate(net, x, y, batch=1000):
    net.eval()
    loss = wrong = 0.0
    with torch.no_grad():
        for k in range(0, len(x), batch):
            logits = net(x[k:k + batch])
            loss += F.cross_entropy(logits, y[k:k + batch], reduction="sum").item()
            wrong += (logits.argmax(1) != y[k:k + batch]).sum().item()
    net.train()
    return loss / len(x), wrong / len(x)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data_dir"), p.add_argument("out")
    p.add_argument("--iterations", type=int, default=16000)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--test-subset", type=int, help="evaluate on the first N test images (smoke tests only)")
    p.add_argument("--stop-after-minutes", type=float, help="checkpoint and stop after this much wall-clock time")
    args = p.parse_args()
    folder = os.path.join(args.data_dir, "cifar-10-batches-bin")
    if not os.path.isdir(folder):
        sys.exit(f"error: {folder} not found (python ../shared/data/make_cifar10_bin.py {args.data_dir} writes it)")
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    started = time.time()

    train_x, train_y, test_x, test_y = read_cifar10(folder)
    train_x = train_x.astype(np.float32) / 255
    mean = train_x.mean(axis=0)  # per-pixel mean of the training set
    train_x = torch.from_numpy(train_x - mean)
    test_x = torch.from_numpy(test_x.astype(np.float32) / 255 - mean)[: args.test_subset]
    test_y = torch.from_numpy(test_y)[: args.test_subset]
    train_y = torch.from_numpy(train_y)

    torch.manual_seed(args.seed)
    net = CifarResNet(20)
    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    milestones = [args.iterations // 2, args.iterations * 3 // 4]
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    per_epoch = len(train_x) // BATCH
    iteration, train_seconds, sums = 0, 0.0, [0.0, 0.0, 0]  # loss, errors, batches since the last evaluation

    checkpoint = os.path.join(args.out, "checkpoint.pt")
    if os.path.exists(checkpoint):
        state = torch.load(checkpoint)
        if state["args"]["iterations"] != args.iterations or state["args"]["seed"] != args.seed:
            sys.exit(f"error: {checkpoint} is a run of {state['args']['iterations']} iterations with seed "
                     f"{state['args']['seed']}; give the same --iterations and --seed, or another OUT")
        net.load_state_dict(state["net"]), optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        iteration, train_seconds, sums = state["iteration"], state["train_seconds"], state["sums"]
    with open(os.path.join(args.out, "log.txt"), "a") as log:
        log.write(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%MZ} | {len(os.sched_getaffinity(0))} cores "
                  f"({cpu_name()}) | torch {torch.__version__}, {args.threads} thread(s) | "
                  f"python {shlex.join(sys.argv)} | from iteration {iteration}\n")
    metrics = os.path.join(args.out, "metrics.csv")
    rows = []
    if iteration > 0:  # rows the checkpoint has not caught up with (a run killed between the two) are dropped
        with open(metrics, newline="") as f:
            rows = [r for r in csv.reader(f)][1:]
        rows = [r for r in rows if int(r[0]) <= iteration]
    with open(metrics, "w", newline="") as f:
        csv.writer(f).writerows([COLUMNS] + rows)

    def save():
        state = {"net": net.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                 "iteration": iteration, "train_seconds": train_seconds, "sums": sums, "args": vars(args)}
        torch.save(state, checkpoint + ".tmp")
        os.replace(checkpoint + ".tmp", checkpoint)

    net.train()
    while iteration < args.iterations:
        epoch, position = divmod(iteration, per_epoch)
        order, offsets, flips = epoch_draws(args.seed, epoch, len(train_x))
        for b in range(position, per_epoch):
            tick = time.perf_counter()
            chosen = slice(b * BATCH, (b + 1) * BATCH)
            images = augmented(train_x[order[chosen]], offsets[chosen], flips[chosen])
            labels = train_y[order[chosen]]
            logits = net(images)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            lr = optimizer.param_groups[0]["lr"]  # the rate this step ran at
            schedule.step()
            iteration += 1
            train_seconds += time.perf_counter() - tick
            sums = [sums[0] + loss.item(), sums[1] + (logits.argmax(1) != labels).float().mean().item(), sums[2] + 1]
            if iteration % args.eval_every == 0 or iteration == args.iterations:
                test_loss, test_error = evaluate(net, test_x, test_y)
                row = [iteration, round(iteration * BATCH / len(train_x), 3), float(f"{lr:.6g}"),
                       round(sums[0] / sums[2], 5), round(sums[1] / sums[2], 5), round(test_loss, 5), round(test_error, 4),
                       round(train_seconds, 1)]
                with open(metrics, "a", newline="") as f:
                    csv.writer(f).writerow(row)
                print(f"iteration {iteration}: lr {row[2]:g}, train error {row[4]:.2%}, test error {test_error:.2%} "
                      f"({iteration * BATCH / train_seconds:.0f} img/s)", flush=True)
                sums = [0.0, 0.0, 0]
                save()
            stop = args.stop_after_minutes is not None and time.time() - started > 60 * args.stop_after_minutes
            if iteration == args.iterations or stop:
                break
        if stop and iteration < args.iterations:
            save()
            print(f"stopped at iteration {iteration} after {args.stop_after_minutes} minutes; run the same command to continue")
            return


if __name__ == "__main__":
    main()
