#!/usr/bin/env python3
"""The PyTorch baseline for fsa's Phase I training speed: the same CIFAR ResNet
(option-A shortcuts), batch, optimiser and augmentation (4-pixel pad + random crop +
flip + normalise, batched on the device, data resident on the device), in eager
Python PyTorch. Prints and writes JSON: median images/s over timed epochs.

Usage: pytorch_reference.py [--device cuda] [--depth 32] [--images 12406] [--epochs 4]
                            [--batch 128] [--json FILE]
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, in_planes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride, self.pad = stride, (planes - in_planes) // 2

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        sc = x
        if self.stride != 1 or self.pad:
            sc = F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + sc)


class ResNet(nn.Module):
    def __init__(self, depth, classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for s, planes in enumerate([16, 32, 64]):
            blocks = []
            for b in range(n):
                blocks.append(Block(in_planes, planes, 2 if s > 0 and b == 0 else 1))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(x.mean((2, 3)))


def augment(images, gen):
    n, c, h, w = images.shape
    padded = F.pad(images, (4, 4, 4, 4))
    oy = torch.randint(0, 9, (n,), generator=gen, device=images.device)
    ox = torch.randint(0, 9, (n,), generator=gen, device=images.device)
    flip = torch.randint(0, 2, (n,), generator=gen, device=images.device).bool()
    ar_h = torch.arange(h, device=images.device)
    ar_w = torch.arange(w, device=images.device)
    rows = (oy[:, None] + ar_h[None]).view(n, 1, h, 1).expand(n, c, h, w + 8)
    cols = ox[:, None] + torch.where(flip[:, None], w - 1 - ar_w[None], ar_w[None])
    x = padded.gather(2, rows).gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))
    return x


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--depth", type=int, default=32)
    p.add_argument("--images", type=int, default=12406)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--json")
    a = p.parse_args()
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    images = torch.randint(0, 256, (a.images, 3, 32, 32), dtype=torch.uint8, device=dev)
    labels = torch.randint(0, 10, (a.images,), device=dev)
    mean = torch.tensor([0.4914, 0.4822, 0.4465], device=dev).view(1, 3, 1, 1)
    std = torch.tensor([0.2023, 0.1994, 0.2010], device=dev).view(1, 3, 1, 1)
    model = ResNet(a.depth).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
    gen = torch.Generator(device=dev)
    gen.manual_seed(0)
    rates = []
    for epoch in range(a.epochs + 1):  # the first epoch warms up
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        order = torch.randperm(a.images, device=dev, generator=gen)
        model.train()
        for s in range(0, a.images, a.batch):
            idx = order[s:s + a.batch]
            x = (augment(images[idx], gen).float() / 255 - mean) / std
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if epoch > 0:
            rates.append(a.images / (time.perf_counter() - t0))
    result = {"framework": f"PyTorch {torch.__version__} eager", "device": str(dev),
              "model": f"resnet{a.depth}", "batch": a.batch, "images_per_epoch": a.images,
              "epoch_images_per_s": rates, "train_images_per_s": statistics.median(rates)}
    print(json.dumps(result, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
