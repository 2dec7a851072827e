"""Write the first N images of every CIFAR-10 batch file into a new folder, in the official
binary layout, for a machine the whole data set cannot travel to (the lent GPU machine takes at
most 64 MiB with the working tree; the full set is 180 MB).

    python benchmarks/cifar_subset.py DATA_DIR OUT_DIR [--per-file 1000]

OUT_DIR/cifar-10-batches-bin/ then holds 5 x N training images and N test images, real ones,
taken in file order (each file of the official archive is already shuffled). A run trained on
it is a run on that subset: say so wherever its numbers appear.
"""

import argparse
import os
import shutil
import sys

from tinyres.data import cifar10


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", help="folder holding cifar-10-batches-bin/")
    parser.add_argument("out_dir")
    parser.add_argument("--per-file", type=int, default=1000, help="images taken from each batch file (default 1000)")
    args = parser.parse_args(argv)
    source = os.path.join(args.data_dir, cifar10.FOLDER)
    target = os.path.join(args.out_dir, cifar10.FOLDER)
    if not 1 <= args.per_file <= 10_000:
        parser.error(f"--per-file must be between 1 and 10000 (the images in one batch file), got {args.per_file}")
    os.makedirs(target, exist_ok=True)
    for name in cifar10.TRAIN_FILES + cifar10.TEST_FILES:
        images, labels = cifar10.read_batch(os.path.join(source, name))
        cifar10.write_batch(os.path.join(target, name), images[: args.per_file], labels[: args.per_file])
    meta = os.path.join(source, "batches.meta.txt")
    if os.path.exists(meta):
        shutil.copy(meta, target)
    print(f"wrote {target}: {5 * args.per_file} training and {args.per_file} test images, the first {args.per_file} of each file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
