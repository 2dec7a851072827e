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
    parser.add_argument("data_dir", help=f"folder holding {cifar10.FOLDER}/ or {cifar10.ARCHIVE}, or {cifar10.FOLDER}/ itself "
                                         "(as python -m tinyres.train --data-dir)")
    parser.add_argument("out_dir")
    parser.add_argument("--per-file", type=int, default=1000, help="images taken from each batch file (default 1000)")
    args = parser.parse_args(argv)
    if not 1 <= args.per_file <= 10_000:
        parser.error(f"--per-file must be between 1 and 10000 (the images in one batch file), got {args.per_file}")
    names = cifar10.TRAIN_FILES + cifar10.TEST_FILES
    target = os.path.join(args.out_dir, cifar10.FOLDER)
    try:
        source = cifar10.locate(args.data_dir, download=False)  # as python -m tinyres.train finds it, never downloading
        if os.path.exists(target) and os.path.samefile(source, target):  # writing would cut the real files short
            parser.error(f"OUT_DIR {args.out_dir} would overwrite the source data in {source} with the subset; give another OUT_DIR")
        batches = {name: cifar10.read_batch(os.path.join(source, name)) for name in names}  # all checked before any is written
    except cifar10.DatasetError as error:
        parser.error(str(error))
    os.makedirs(target, exist_ok=True)
    for name in names:
        images, labels = batches[name]
        cifar10.write_batch(os.path.join(target, name), images[: args.per_file], labels[: args.per_file])
    meta = os.path.join(source, "batches.meta.txt")
    if os.path.exists(meta):
        shutil.copy(meta, target)
    print(f"wrote {target}: {5 * args.per_file} training and {args.per_file} test images, the first {args.per_file} of each file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
