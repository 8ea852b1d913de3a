#!/usr/bin/env python3
"""Writes ImageNet-LT-style split lists over an image folder.

The folder holds train/<class>/* and test/<class>/* (as the shared CIFAR-10 JPEGs do).
The training list keeps floor(n_max * (1/IF)^(i/(C-1))) images of class i (METHOD.md,
"Long-tailed training sets"), chosen with a seeded shuffle; the test list keeps up to
--test-per-class images of every class. Lines are `relative/path label`, as in
ImageNet_LT_train.txt, so that `dataset.name: ListFile-LT` reads them.

Example (the reduced ImageNet-LT recipe on real photographs):
  d=$(mktemp -d) && tar xzf ../shared/data/cifar10-jpeg.tar.gz -C "$d"
  python3 scripts/make_lt_lists.py "$d" --imbalance-factor 10 --n-max 500 --test-per-class 200
  build/fsa run --config configs/imagenet_lt_resnet10_reduced.yaml --set dataset.root="$d" \
      --set dataset.train_list=LT_train.txt --set dataset.test_list=LT_test.txt ...
"""
import argparse
import math
import os
import random
import sys


def class_files(folder):
    classes = sorted(c for c in os.listdir(folder) if os.path.isdir(os.path.join(folder, c)))
    return classes, {c: sorted(os.listdir(os.path.join(folder, c))) for c in classes}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("root", help="folder with train/<class>/ and test/<class>/")
    p.add_argument("--imbalance-factor", type=float, default=100.0)
    p.add_argument("--n-max", type=int, default=0, help="images of class 0 (default: all it has)")
    p.add_argument("--test-per-class", type=int, default=0, help="0: all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prefix", default="LT", help="lists are <prefix>_train.txt, <prefix>_test.txt")
    a = p.parse_args()
    if a.imbalance_factor < 1:
        sys.exit("--imbalance-factor must be >= 1")
    for split in ("train", "test"):
        if not os.path.isdir(os.path.join(a.root, split)):
            sys.exit(f"{a.root}: no {split}/ folder")
    classes, train = class_files(os.path.join(a.root, "train"))
    test_classes, test = class_files(os.path.join(a.root, "test"))
    if classes != test_classes:
        sys.exit(f"{a.root}: train/ and test/ have different class folders")
    n_max = a.n_max or max(len(f) for f in train.values())
    rng = random.Random(a.seed)
    c_count = len(classes)
    targets = [n_max if c_count == 1 else
               math.floor(n_max * (1.0 / a.imbalance_factor) ** (i / (c_count - 1)))
               for i in range(c_count)]
    # Refuse lists that would not be the long tail asked for.
    short = [(c, len(train[c]), t) for c, t in zip(classes, targets) if len(train[c]) < t]
    if short:
        c, have, want = short[0]
        sys.exit(f"{a.root}: {len(short)} classes have fewer training images than the long tail "
                 f"needs (the first: '{c}' has {have}, needs {want}); lower --n-max")
    if min(targets) < 1:
        sys.exit(f"--imbalance-factor {a.imbalance_factor} with --n-max {n_max} leaves classes "
                 f"without images ({targets}); raise --n-max or lower the factor")
    counts = []
    with open(os.path.join(a.root, f"{a.prefix}_train.txt"), "w") as out:
        for i, c in enumerate(classes):
            n = targets[i]
            files = list(train[c])
            rng.shuffle(files)
            kept = sorted(files[:n])
            counts.append(len(kept))
            for f in kept:
                out.write(f"train/{c}/{f} {i}\n")
    with open(os.path.join(a.root, f"{a.prefix}_test.txt"), "w") as out:
        for i, c in enumerate(classes):
            files = test[c][: a.test_per_class] if a.test_per_class else test[c]
            for f in files:
                out.write(f"test/{c}/{f} {i}\n")
    print(f"{a.prefix}_train.txt: {sum(counts)} images, per class {counts}")


if __name__ == "__main__":
    main()
