"""Writes the torch.save files that tests/train/pretrained_test.cpp reads.

Run by Debian's PyTorch: /usr/bin/python3 tests/io/torch_files.py OUT_DIR

Every network is seeded and its BatchNorm running statistics are set away
from 0 and 1, so that a test comparing fsa's logits with the ones written
here would see any buffer that failed to load. Each '<name>.logits.pth' holds
{'x': a batch of inputs, 'logits': the network's eval-mode output}; each
'<name>.predict.pth' holds {'logits'} of the PNG files image<i>.png (or
small<i>.png) through torchvision's own transforms, for `fsa predict`.
"""

import argparse
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.transforms as T
from PIL import Image

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
CIFAR10_MEAN, CIFAR10_STD = [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]


def perturb_batchnorm(model, seed):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            m.weight.data.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            m.num_batches_tracked.fill_(7)


class LambdaLayer(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class BasicBlock(nn.Module):
    """The CIFAR ResNet block of akamaster/pytorch_resnet_cifar10 (option A)."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            pad = planes // 4
            self.shortcut = LambdaLayer(
                lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad), "constant", 0))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth, num_classes, head="linear"):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.head = head
        setattr(self, head, nn.Linear(64, num_classes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3]).flatten(1)
        return getattr(self, self.head)(out)


class ReferenceNet(CifarResNet):
    """The FSA reference implementation registers its trunk and its head a
    second time, as feature_sub_net and classifier, so that its state_dict
    names every tensor twice."""

    def __init__(self, depth, num_classes):
        super().__init__(depth, num_classes, head="fc")
        self.feature_sub_net = nn.Sequential(self.conv1, self.bn1, nn.ReLU(), self.layer1,
                                             self.layer2, self.layer3)
        self.classifier = self.fc


def save_logits(model, x, path):
    model.eval()
    with torch.no_grad():
        torch.save({"x": x, "logits": model(x)}, path)


def write_images(out, stem, sizes, seed):
    """Random RGB PNG files of the given (height, width); returns their paths."""
    g = torch.Generator().manual_seed(seed)
    paths = []
    for i, (h, w) in enumerate(sizes):
        pixels = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8)
        paths.append(f"{out}/{stem}{i}.png")
        Image.fromarray(pixels.numpy()).save(paths[-1])
    return paths


def save_predict_logits(model, transform, paths, path):
    x = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
    model.eval()
    with torch.no_grad():
        torch.save({"logits": model(x)}, path)


def main(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)

    # torchvision's ResNet-18 at 10 classes, in every way people save it.
    r18 = torchvision.models.resnet18(num_classes=10)
    perturb_batchnorm(r18, 1)
    sd = r18.state_dict()
    torch.save(sd, f"{out}/r18.pth")
    torch.save(sd, f"{out}/r18_legacy.pth", _use_new_zipfile_serialization=False)
    ddp = {"module." + k: v for k, v in sd.items()}
    torch.save({"state_dict": ddp, "epoch": 90, "best_acc1": torch.tensor(71.5)},
               f"{out}/r18_wrapped.pth")
    optimizer = torch.optim.SGD(r18.parameters(), lr=0.1, momentum=0.9)
    torch.save({"model": sd, "optimizer": optimizer.state_dict(),
                "args": argparse.Namespace(lr=0.1, epochs=90), "epoch": 89},
               f"{out}/r18_torchvision_reference.pth")
    save_logits(r18, torch.randn(2, 3, 64, 64), f"{out}/r18.logits.pth")
    torch.save(r18, f"{out}/r18_whole_model.pth")
    # Shorter sides of 64 already, so that Resize(64) does not resample: fsa's
    # resampling may differ from PIL's by a grey level (data/image_transforms.h).
    images = write_images(out, "image", ((64, 80), (96, 64), (64, 64)), seed=5)
    save_predict_logits(r18, T.Compose([T.Resize(64), T.CenterCrop(64), T.ToTensor(),
                                        T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]),
                        images, f"{out}/r18.predict.pth")

    # At 1000 classes: a head that does not fit a 10-class model.
    r18_1000 = torchvision.models.resnet18()
    torch.save(r18_1000.state_dict(), f"{out}/r18_1000.pth")

    # An LDAM-DRW style CIFAR ResNet-32 checkpoint: DataParallel's prefix.
    r32 = CifarResNet(32, 10)
    perturb_batchnorm(r32, 2)
    torch.save({"epoch": 200, "state_dict": {"module." + k: v for k, v in r32.state_dict().items()},
                "best_acc1": 77.0}, f"{out}/r32_ldam.pth")
    x32 = torch.randn(3, 3, 32, 32)
    save_logits(r32, x32, f"{out}/r32_ldam.logits.pth")

    # A 4-class CIFAR ResNet-20 for `fsa train` on a tiny image folder.
    r20 = CifarResNet(20, 4)
    perturb_batchnorm(r20, 4)
    torch.save(r20.state_dict(), f"{out}/r20_4class.pth")

    # The FSA reference implementation's checkpoint: 'model_state', every
    # tensor named twice, an 'fc' head.
    ref = ReferenceNet(32, 10)
    perturb_batchnorm(ref, 3)
    assert any(k.startswith("feature_sub_net.") for k in ref.state_dict())
    torch.save({"model_state": ref.state_dict(), "epoch": 199}, f"{out}/r32_reference.pth")
    save_logits(ref, x32, f"{out}/r32_reference.logits.pth")
    small = write_images(out, "small", ((32, 32), (32, 32)), seed=6)
    save_predict_logits(ref, T.Compose([T.ToTensor(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)]),
                        small, f"{out}/r32_reference.predict.pth")

    # A pickle that would run a shell command if it were unpickled by Python.
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {out}/pwned",))

    torch.save({"state_dict": r32.state_dict(), "hook": Evil()}, f"{out}/evil_nested.pth")
    torch.save(Evil(), f"{out}/evil.pth")


if __name__ == "__main__":
    main(sys.argv[1])
