"""Three networks of the kinds researchers bring to fercore, for the tests of ``import-model``.

Each is built here, trained for a few steps on phantom faces with its own input normalisation, and
saved in the three forms a researcher has: TorchScript, ONNX, and a state dict with this file as
its factory (``foreign_nets.py:build_resnet`` ...).

- ``resnet``: BatchNorm and residual adds (ResNet-style basic blocks, a strided block with a 1x1
  projection shortcut), ``nn.ReLU`` modules, global average pooling; grey 48 px.
- ``xception``: mini-Xception-style: depthwise-separable convolutions, TensorFlow-style
  asymmetric "same" max-pooling (one row and column of -inf padding on the bottom and right,
  then a 3 x 3 stride-2 pool), residual adds with a strided 1x1 shortcut, functional ReLUs,
  global average pooling; grey 48 px.
- ``rgb``: a 3-channel network with ImageNet's mean and std (the grey face replicated), in-place
  ReLUs, max-pools and a fixed-size fully connected head (so a wrong input size fails); 48 px.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

N_CLASSES = 8
#: The phantom's classes in their order, in the spellings other projects use.
CLASSES = "neutral,angry,contemptuous,disgusted,fearful,happiness,sad,surprised"
SIZE = 48
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU()
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + (x if self.down is None else self.down(x)))


class ResNetFER(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.layer1 = BasicBlock(8, 8)
        self.layer2 = BasicBlock(8, 16, stride=2)
        self.fc = nn.Linear(16, N_CLASSES)

    def forward(self, x):
        x = self.pool(self.relu(self.bn(self.stem(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class SeparableConv(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


def same_max_pool(x):
    """TensorFlow's 3 x 3, stride-2 max-pool with "same" padding on an even input: one row and
    column of -inf on the bottom and right only."""
    return F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 3, 2)


class XceptionModule(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.sep1 = SeparableConv(c_in, c_out)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.sep2 = SeparableConv(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=2, bias=False)
        self.bn_short = nn.BatchNorm2d(c_out)

    def forward(self, x):
        y = F.relu(self.bn1(self.sep1(x)))
        y = same_max_pool(self.bn2(self.sep2(y)))
        return y + self.bn_short(self.shortcut(x))


class MiniXception(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.block1 = XceptionModule(8, 16)
        self.block2 = XceptionModule(16, 16)
        self.head = nn.Conv2d(16, N_CLASSES, 3, padding=1)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.block2(self.block1(x))
        return torch.mean(self.head(x), dim=(2, 3))


class RGBNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * (SIZE // 8) ** 2, 32), nn.ReLU(inplace=True),
                                        nn.Linear(32, N_CLASSES))

    def forward(self, x):
        return self.classifier(self.features(x))


def build_resnet() -> nn.Module:
    return ResNetFER()


def build_xception() -> nn.Module:
    return MiniXception()


def build_rgb() -> nn.Module:
    return RGBNet()


#: name -> (factory function, channels, mean, std)
NETS = {
    "resnet": ("build_resnet", 1, [0.5], [0.25]),
    "xception": ("build_xception", 1, [0.5], [0.5]),
    "rgb": ("build_rgb", 3, IMAGENET_MEAN, IMAGENET_STD),
}


def prepare(images: np.ndarray, channels: int, mean, std) -> torch.Tensor:
    """How the network was trained to see faces: [0, 1] pixels, replicated, minus mean over std."""
    x = torch.as_tensor(images, dtype=torch.float32)[:, None] / 255.0
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False) \
        if x.shape[-1] != SIZE else x
    x = x.expand(-1, channels, -1, -1)
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def train_briefly(name: str, images: np.ndarray, labels: np.ndarray, *, steps: int = 40, seed: int = 0) -> nn.Module:
    """Build network ``name`` and train it ``steps`` SGD steps on the faces (batch 32)."""
    fn, channels, mean, std = NETS[name]
    torch.manual_seed(seed)
    net = globals()[fn]()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    x = prepare(images, channels, mean, std)
    y = torch.as_tensor(labels, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=g)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def save_formats(net: nn.Module, name: str, folder: Path) -> dict[str, dict]:
    """The network as TorchScript (traced), ONNX (opset 17, dynamic batch, batch norm kept) and a
    state dict with this file as its factory: format -> import_model keyword arguments."""
    fn, channels, mean, std = NETS[name]
    folder.mkdir(parents=True, exist_ok=True)
    x = torch.randn(2, channels, SIZE, SIZE)
    ts = folder / f"{name}.pt"
    torch.jit.save(torch.jit.trace(net, x), str(ts))
    onnx_path = folder / f"{name}.onnx"
    torch.onnx.export(net, (x,), str(onnx_path), dynamo=False, opset_version=17, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      training=torch.onnx.TrainingMode.PRESERVE)
    sd = folder / f"{name}_weights.pth"
    torch.save(net.state_dict(), sd)
    common = dict(classes=CLASSES, size=SIZE, channels=channels, mean=mean, std=std)
    return {"torchscript": dict(model_file=ts, **common),
            "onnx": dict(model_file=onnx_path, **common),
            "state_dict": dict(model_file=sd, factory=f"{Path(__file__).resolve()}:{fn}", **common)}
