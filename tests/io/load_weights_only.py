"""Loads fsa's files as a PyTorch user would: torch.load(f, weights_only=True).

Run by Debian's PyTorch: /usr/bin/python3 tests/io/load_weights_only.py FILE...

Every file must load. A checkpoint's state_dict must also load with
strict=True into the usual network of its architecture: torchvision's
resnetNN, or the option-A CIFAR ResNet (tests/io/torch_files.py). Prints one
line per file; exits 1 at the first failure.
"""

import os
import sys

import torch
import torchvision

sys.dont_write_bytecode = True  # nothing is written into the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_files import CifarResNet  # noqa: E402


def network(arch, num_classes):
    depth = int(arch[len("resnet"):])
    if depth in (20, 32, 44, 56, 110):
        return CifarResNet(depth, num_classes)
    return getattr(torchvision.models, arch)(num_classes=num_classes)


def main(paths):
    for path in paths:
        d = torch.load(path, map_location="cpu", weights_only=True)
        line = f"{path}: {len(d)} entries"
        if "state_dict" in d and "arch" in d:
            net = network(d["arch"], int(d["num_classes"]))
            net.load_state_dict(d["state_dict"], strict=True)
            line += f", state_dict loads strictly into {d['arch']}"
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
