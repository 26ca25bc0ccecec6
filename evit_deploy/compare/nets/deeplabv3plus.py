"""DeepLabV3+ with a MobileNetV2-D8 backbone, as mmsegmentation configures it for Cityscapes
(``mobilenet-v2-d8_deeplabv3plus_4xb2-80k_cityscapes-512x1024``: 75.20 mIoU, the paper's DeepLabV3plus-Mbv2 row),
written from the DeepLabV3+ and MobileNetV2 papers and that config. Module names follow mmsegmentation's
``EncoderDecoder`` (``backbone.layer3.0.conv.1.conv``, ``decode_head.aspp_modules.1.depthwise_conv.bn``, ...).

Backbone: MobileNetV2 (width 1.0, ReLU6) with output stride 8: the last four layers keep stride 1 and dilate their
first block's depthwise conv by 2, 2, 4, 4. Head (``DepthwiseSeparableASPPHead``, 512 channels): image pooling and
an ASPP of a 1×1 conv and three depthwise-separable 3×3 convs (dilations 12, 24, 36) on the stride-8 features, a
3×3 bottleneck, upsampled to stride 4 and fused with the stride-4 features (24 → 48 channels) by two
depthwise-separable convs, then the classifier; logits at H/4. The auxiliary FCN head of training is kept in the
module tree (``auxiliary_head``, so a checkpoint loads) but not run at inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import ConvModule, DepthwiseSeparableConvModule

STRIDE = 8  # the backbone's output stride; the stride-4 features must line up: sides multiples of 8

# (expand ratio, channels, blocks, stride, dilation) per layer: MobileNetV2 with strides (1,2,2,1,1,1,1) and
# dilations (1,1,1,2,2,4,4), as the D8 config sets them
LAYERS = ((1, 16, 1, 1, 1), (6, 24, 2, 2, 1), (6, 32, 3, 2, 1), (6, 64, 4, 1, 2), (6, 96, 3, 1, 2),
          (6, 160, 3, 1, 4), (6, 320, 1, 1, 4))
OUT_LAYERS = (1, 2, 4, 6)  # layer2 (stride 4, 24 ch), layer3, layer5 (96 ch), layer7 (320 ch)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: optional 1×1 expansion, 3×3 depthwise (dilated), linear 1×1 projection (``conv``)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int, dilation: int) -> None:
        super().__init__()
        hidden = round(in_ch * expand)
        self.use_res_connect = stride == 1 and in_ch == out_ch
        layers = [ConvModule(in_ch, hidden, 1, act="relu6")] if expand != 1 else []
        layers += [ConvModule(hidden, hidden, 3, stride, padding=dilation, dilation=dilation, groups=hidden,
                              act="relu6"),
                   ConvModule(hidden, out_ch, 1, act=None)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = ConvModule(3, 32, 3, 2, padding=1, act="relu6")
        in_ch = 32
        for i, (expand, ch, blocks, stride, dilation) in enumerate(LAYERS):
            layer = []
            for j in range(blocks):  # stride and dilation apply to the first block of a layer only
                layer.append(InvertedResidual(in_ch, ch, stride if j == 0 else 1, expand, dilation if j == 0 else 1))
                in_ch = ch
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.conv1(x)
        outs = []
        for i in range(len(LAYERS)):
            x = getattr(self, f"layer{i + 1}")(x)
            if i in OUT_LAYERS:
                outs.append(x)
        return outs


class DepthwiseSeparableASPPHead(nn.Module):
    def __init__(self, num_classes: int, in_ch: int = 320, channels: int = 512, c1_in: int = 24, c1: int = 48,
                 dilations: tuple[int, ...] = (1, 12, 24, 36)) -> None:
        super().__init__()
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvModule(in_ch, channels, 1))
        self.aspp_modules = nn.ModuleList(
            ConvModule(in_ch, channels, 1) if d == 1 else DepthwiseSeparableConvModule(in_ch, channels, 3, d, d)
            for d in dilations)
        self.bottleneck = ConvModule((len(dilations) + 1) * channels, channels, 3, padding=1)
        self.c1_bottleneck = ConvModule(c1_in, c1, 1)
        self.sep_bottleneck = nn.Sequential(DepthwiseSeparableConvModule(channels + c1, channels),
                                            DepthwiseSeparableConvModule(channels, channels))
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: list[Tensor]) -> Tensor:
        x, low = feats[3], feats[0]
        pooled = self.image_pool(x).expand(-1, -1, *x.shape[2:])  # a 1×1 map resized to x's size is a broadcast
        x = self.bottleneck(torch.cat([pooled] + [m(x) for m in self.aspp_modules], dim=1))
        x = F.interpolate(x, size=low.shape[2:], mode="bilinear", align_corners=False)
        x = self.sep_bottleneck(torch.cat([x, self.c1_bottleneck(low)], dim=1))
        return self.conv_seg(self.dropout(x))


class FCNHead(nn.Module):
    """The auxiliary head of training (on layer5, 96 channels): one 3×3 conv and a classifier. Not run."""

    def __init__(self, num_classes: int, in_ch: int = 96, channels: int = 256) -> None:
        super().__init__()
        self.convs = nn.Sequential(ConvModule(in_ch, channels, 3, padding=1))
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)


class DeepLabV3PlusMobileNetV2(nn.Module):
    """``[B, 3, H, W]`` → logits ``[B, classes, H/4, W/4]``."""

    def __init__(self, num_classes: int = 19) -> None:
        super().__init__()
        self.backbone = MobileNetV2()
        self.decode_head = DepthwiseSeparableASPPHead(num_classes)
        self.auxiliary_head = FCNHead(num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode_head(self.backbone(x))


def deeplabv3plus_mbv2(num_classes: int = 19) -> DeepLabV3PlusMobileNetV2:
    return DeepLabV3PlusMobileNetV2(num_classes)


def inference_parts(num_classes: int = 19) -> nn.Module:
    """What runs at inference (backbone + decode head; the paper's 15M), without the auxiliary head."""
    model = DeepLabV3PlusMobileNetV2(num_classes)
    return nn.ModuleList([model.backbone, model.decode_head])
