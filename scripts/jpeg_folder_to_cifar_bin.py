#!/usr/bin/env python3
"""Writes an image folder of 32x32 images (root/{train,test}/<class>/*.jpg, classes in
sorted order) as CIFAR-10 binary batches (cifar-10-batches-bin/data_batch_1..5.bin,
test_batch.bin: per record one label byte, then the R, G and B planes).

Used where fsa is built without OpenCV (the GPU machine): fsa then reads CIFAR-10 binary.
Needs Pillow and NumPy.  Usage: jpeg_folder_to_cifar_bin.py IMAGE_ROOT OUT_ROOT
"""
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image


def load(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)


def split_records(root, split):
    classes = sorted(d for d in os.listdir(os.path.join(root, split))
                     if os.path.isdir(os.path.join(root, split, d)))
    files, labels = [], []
    for label, c in enumerate(classes):
        d = os.path.join(root, split, c)
        for f in sorted(os.listdir(d)):
            files.append(os.path.join(d, f))
            labels.append(label)
    with ProcessPoolExecutor() as pool:
        images = list(pool.map(load, files, chunksize=256))
    records = np.empty((len(files), 1 + 3072), dtype=np.uint8)
    records[:, 0] = labels
    for i, img in enumerate(images):
        if img.shape != (32, 32, 3):
            sys.exit(f"{files[i]}: {img.shape[1]}x{img.shape[0]}, expected 32x32")
        records[i, 1:] = img.transpose(2, 0, 1).reshape(-1)
    return records


def main():
    src, dst = sys.argv[1], os.path.join(sys.argv[2], "cifar-10-batches-bin")
    os.makedirs(dst, exist_ok=True)
    train = split_records(src, "train")
    for b, chunk in enumerate(np.array_split(train, 5)):
        chunk.tofile(os.path.join(dst, f"data_batch_{b + 1}.bin"))
    split_records(src, "test").tofile(os.path.join(dst, "test_batch.bin"))
    print(f"wrote {len(train)} training records to {dst}")


if __name__ == "__main__":
    main()
