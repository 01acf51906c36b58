"""RetinaFace with a ResNet-50 body, in plain torch, laid out so that ``Resnet50_Final.pth`` loads as is.

The architecture and parameter names follow biubug6/Pytorch_Retinaface (``cfg_re50``), which NVIDIA's face
blur filter imports: a torchvision-style ResNet-50 cut after ``layer4`` (keys ``body.*``), a 3-level FPN
(``fpn.*``), one SSH context module per level (``ssh1..3``) and per-level class, box and landmark heads with
2 anchors per cell. torchvision is deliberately not used: its wheels are tied to one torch build, and pulling
it in would replace the CPU torch that the rest of cosmos-cli is installed with.

Only inference ("test" phase) is implemented: softmaxed class scores, raw box and landmark offsets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

RE50_CONFIG = {
    "min_sizes": ((16, 32), (64, 128), (256, 512)),
    "steps": (8, 16, 32),
    "variance": (0.1, 0.2),
    "in_channel": 256,
    "out_channel": 256,
}
ANCHORS_PER_CELL = 2


class Bottleneck(nn.Module):
    """torchvision's ResNet-50 bottleneck (stride on the 3x3 conv, "v1.5")."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        width = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != width:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, width, 1, stride=stride, bias=False), nn.BatchNorm2d(width)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50Body(nn.Module):
    """ResNet-50 up to ``layer4``; returns the outputs of layers 2, 3 and 4 (strides 8, 16, 32)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._layer(64, 64, blocks=3, stride=1)
        self.layer2 = self._layer(256, 128, blocks=4, stride=2)
        self.layer3 = self._layer(512, 256, blocks=6, stride=2)
        self.layer4 = self._layer(1024, 512, blocks=3, stride=2)

    @staticmethod
    def _layer(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [Bottleneck(inplanes, planes, stride)]
        layers += [Bottleneck(planes * Bottleneck.expansion, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer2(self.layer1(x))
        c3 = self.layer3(c2)
        return [c2, c3, self.layer4(c3)]


def conv_bn(inp: int, oup: int, kernel: int, leaky: float | None) -> nn.Sequential:
    """Conv (no bias) + BatchNorm, then LeakyReLU unless ``leaky`` is None (the "no_relu" variants)."""
    layers: list[nn.Module] = [nn.Conv2d(inp, oup, kernel, 1, kernel // 2, bias=False), nn.BatchNorm2d(oup)]
    if leaky is not None:
        layers.append(nn.LeakyReLU(negative_slope=leaky, inplace=True))
    return nn.Sequential(*layers)


class FPN(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__()
        leaky = 0.1 if out_channels <= 64 else 0.0
        self.output1 = conv_bn(in_channels[0], out_channels, 1, leaky)
        self.output2 = conv_bn(in_channels[1], out_channels, 1, leaky)
        self.output3 = conv_bn(in_channels[2], out_channels, 1, leaky)
        self.merge1 = conv_bn(out_channels, out_channels, 3, leaky)
        self.merge2 = conv_bn(out_channels, out_channels, 3, leaky)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        out1, out2, out3 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        out2 = self.merge2(out2 + F.interpolate(out3, size=out2.shape[-2:], mode="nearest"))
        out1 = self.merge1(out1 + F.interpolate(out2, size=out1.shape[-2:], mode="nearest"))
        return [out1, out2, out3]


class SSH(nn.Module):
    """Single Stage Headless context module: parallel 3x3, 5x5 (two 3x3) and 7x7 (three 3x3) branches."""

    def __init__(self, in_channel: int, out_channel: int) -> None:
        super().__init__()
        leaky = 0.1 if out_channel <= 64 else 0.0
        self.conv3X3 = conv_bn(in_channel, out_channel // 2, 3, None)
        self.conv5X5_1 = conv_bn(in_channel, out_channel // 4, 3, leaky)
        self.conv5X5_2 = conv_bn(out_channel // 4, out_channel // 4, 3, None)
        self.conv7X7_2 = conv_bn(out_channel // 4, out_channel // 4, 3, leaky)
        self.conv7x7_3 = conv_bn(out_channel // 4, out_channel // 4, 3, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5_1 = self.conv5X5_1(x)
        out = torch.cat([self.conv3X3(x), self.conv5X5_2(branch5_1), self.conv7x7_3(self.conv7X7_2(branch5_1))], 1)
        return F.relu(out)


class _Head(nn.Module):
    """A 1x1 conv giving ``values`` numbers per anchor, flattened to (N, H*W*anchors, values)."""

    def __init__(self, channels: int, values: int) -> None:
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(channels, ANCHORS_PER_CELL * values, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1).contiguous()
        return out.view(out.shape[0], -1, self.values)


class RetinaFace(nn.Module):
    """Returns (box offsets (N, P, 4), face/background scores (N, P, 2) softmaxed, landmarks (N, P, 10))."""

    def __init__(self, cfg: dict = RE50_CONFIG) -> None:
        super().__init__()
        self.body = ResNet50Body()
        c = cfg["in_channel"]
        out = cfg["out_channel"]
        self.fpn = FPN([c * 2, c * 4, c * 8], out)
        self.ssh1, self.ssh2, self.ssh3 = SSH(out, out), SSH(out, out), SSH(out, out)
        self.ClassHead = nn.ModuleList(_Head(out, 2) for _ in range(3))
        self.BboxHead = nn.ModuleList(_Head(out, 4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(_Head(out, 10) for _ in range(3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fpn = self.fpn(self.body(x))
        features = [self.ssh1(fpn[0]), self.ssh2(fpn[1]), self.ssh3(fpn[2])]
        boxes = torch.cat([head(f) for head, f in zip(self.BboxHead, features, strict=True)], dim=1)
        scores = torch.cat([head(f) for head, f in zip(self.ClassHead, features, strict=True)], dim=1)
        landmarks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, features, strict=True)], dim=1)
        return boxes, F.softmax(scores, dim=-1), landmarks


def prior_boxes(height: int, width: int, cfg: dict = RE50_CONFIG) -> torch.Tensor:
    """Anchors (P, 4) as (cx, cy, w, h) relative to the image, in the order the heads emit them.

    Row-major over each level's feature map (size ``ceil(side / step)``), ``min_sizes`` innermost.
    """
    priors = []
    for step, min_sizes in zip(cfg["steps"], cfg["min_sizes"], strict=True):
        rows, cols = -(-height // step), -(-width // step)
        cy = (torch.arange(rows, dtype=torch.float64) + 0.5) * step / height
        cx = (torch.arange(cols, dtype=torch.float64) + 0.5) * step / width
        grid_y, grid_x = torch.meshgrid(cy, cx, indexing="ij")
        for_sizes = [
            torch.stack(
                [
                    grid_x,
                    grid_y,
                    torch.full_like(grid_x, size / width),
                    torch.full_like(grid_y, size / height),
                ],
                -1,
            )
            for size in min_sizes
        ]
        priors.append(torch.stack(for_sizes, dim=2).reshape(-1, 4))
    return torch.cat(priors).float()


def decode_boxes(offsets: torch.Tensor, priors: torch.Tensor, variance=RE50_CONFIG["variance"]) -> torch.Tensor:
    """Offsets (N, P, 4) + priors (P, 4) -> corner boxes (N, P, 4), (x1, y1, x2, y2) relative to the image."""
    priors = priors.unsqueeze(0)
    centres = priors[..., :2] + offsets[..., :2] * variance[0] * priors[..., 2:]
    sizes = priors[..., 2:] * torch.exp(offsets[..., 2:] * variance[1])
    top_left = centres - sizes / 2
    return torch.cat([top_left, top_left + sizes], dim=-1)


def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression with Pytorch_Retinaface's ``py_cpu_nms`` conventions.

    Areas count pixels inclusively (``x2 - x1 + 1``); a box is dropped when its overlap with a kept,
    higher-scoring box is above ``threshold``. Returns the kept indices, best first.
    """
    x1, y1, x2, y2 = boxes.unbind(-1)
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = torch.argsort(scores, descending=True, stable=True)
    keep = []
    while order.numel() > 0:
        best, rest = order[0], order[1:]
        keep.append(best)
        width = (torch.minimum(x2[best], x2[rest]) - torch.maximum(x1[best], x1[rest]) + 1).clamp(min=0)
        height = (torch.minimum(y2[best], y2[rest]) - torch.maximum(y1[best], y1[rest]) + 1).clamp(min=0)
        inter = width * height
        overlap = inter / (areas[best] + areas[rest] - inter)
        order = rest[overlap <= threshold]
    return torch.stack(keep) if keep else torch.zeros(0, dtype=torch.long, device=boxes.device)
