"""torchvision's video networks (R3D, MC3, R(2+1)D, S3D, MViT, Video Swin) behind the VideoModel interface.

The torchvision modules are adopted as direct children, so state-dict keys are exactly torchvision's
(``stem.0.weight``, ``layer1.0.conv1.0.weight``, ``fc.weight``, ...): a torchvision checkpoint file
loads with ``weights=PATH``.

``resnet3d_18`` / ``resnet3d_50`` are the 3D ResNets of Hara et al. (CVPR 2018), the models of the DRL
paper, built from torchvision's ``VideoResNet`` with Hara's stem. They differ from torchvision's
``r3d_18`` (Tran et al. 2018) in the stem only: a 7x7x7 first convolution (stride 1x2x2, padding 3)
followed by a 3x3x3 max-pool of stride 2 (which halves the clip length and the frame size once
more), where ``r3d_18`` has a 3x7x7 convolution and no pooling. The residual stages are identical
(3x3x3 convolutions, shortcut B: a strided 1x1x1 convolution + BN). A Hara / video-drl checkpoint
(``conv1``, ``bn1``, ``layerX.Y.convZ``/``bnZ``, ``fc`` or ``head``) loads with ``weights=PATH``.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from vdgtool.errors import ConfigError
from vdgtool.models.base import VideoModel, inflate_in_channels
from vdgtool.models.registry import (IMAGENET_MEAN, IMAGENET_STD, KINETICS_MEAN, KINETICS_STD, InputSpec,
                                     register_model)

_RESNETS = ("r3d_18", "mc3_18", "r2plus1d_18")
_MVITS = ("mvit_v1_b", "mvit_v2_s")
_SWINS = ("swin3d_t", "swin3d_s", "swin3d_b")


class TorchvisionVideoModel(VideoModel):
    """Wraps a torchvision video network (kind: resnet, s3d, mvit, swin3d)."""

    def __init__(self, net: nn.Module, kind: str, num_classes: int, dropout: float, in_channels: int,
                 input_spec: InputSpec):
        super().__init__()
        self.kind = kind
        self.in_channels = in_channels
        self.input_spec = input_spec
        head_attr = {"resnet": "fc", "s3d": "classifier", "mvit": "head", "swin3d": "head"}[kind]
        for name, child in net.named_children():
            if name != head_attr:
                self.add_module(name, child)
        old_head = getattr(net, head_attr)
        if kind == "resnet":
            self.num_features = old_head.in_features
        elif kind == "s3d":
            self.num_features = old_head[1].in_channels
        elif kind == "mvit":
            self.num_features = old_head[1].in_features
        else:
            self.num_features = old_head.in_features
        self.classifier_path = {"resnet": "fc", "s3d": "classifier.1", "mvit": "head.1", "swin3d": "head"}[kind]
        self.head_drop = nn.Dropout(dropout)
        if kind in ("s3d", "mvit"):  # keep torchvision's Sequential(Dropout, layer) key layout
            setattr(self, head_attr, nn.Sequential(self.head_drop, old_head[1]))
        else:
            setattr(self, head_attr, old_head)
        self.num_classes = int(getattr(self.get_classifier(), "out_features", 0)
                               or self.get_classifier().out_channels)
        if self.num_classes != num_classes:
            self.reset_classifier(num_classes)
        if in_channels != 3:
            self._adapt_stem(in_channels)

    def _first_conv_path(self) -> str:
        return {"resnet": "stem.0", "s3d": "features.0.0.0", "mvit": "conv_proj",
                "swin3d": "patch_embed.proj"}[self.kind]

    def _adapt_stem(self, in_channels: int) -> None:
        conv: nn.Conv3d = self.get_submodule(self._first_conv_path())
        new = nn.Conv3d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                        conv.dilation, conv.groups, conv.bias is not None)
        with torch.no_grad():
            new.weight.copy_(inflate_in_channels(conv.weight, in_channels))
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
        parent, _, leaf = self._first_conv_path().rpartition(".")
        setattr(self.get_submodule(parent) if parent else self, leaf, new)

    def _build_classifier(self, num_classes: int) -> nn.Module:
        if self.kind == "s3d":
            return nn.Conv3d(self.num_features, num_classes, kernel_size=1, bias=True)
        return nn.Linear(self.num_features, num_classes)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        feats = self.head_drop(feats)
        if self.kind == "s3d":
            return self.get_classifier()(feats[:, :, None, None, None]).flatten(1)
        return self.get_classifier()(feats)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if self.kind == "resnet":
            x = self.stem(x)
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.avgpool(x).flatten(1)
        if self.kind == "s3d":
            t, h, w = x.shape[2:]
            x = self.features(x)
            kt, kh, kw = self.avgpool.kernel_size
            if x.shape[2] < kt or x.shape[3] < kh or x.shape[4] < kw:
                raise ConfigError(
                    f"s3d cannot take a {t}-frame {h}x{w} clip: its feature map {tuple(x.shape[2:])} is smaller "
                    f"than torchvision's fixed {kt}x{kh}x{kw} pooling window",
                    "feed at least 13 frames at 224 px or more (s3d's default is 16 x 224)")
            # avgpool then the mean over positions == torchvision's avgpool -> 1x1 conv -> mean (conv is affine)
            return self.avgpool(x).mean(dim=(2, 3, 4))
        if self.kind == "mvit":
            want = (self.pos_encoding.temporal_size,) + tuple(self.pos_encoding.spatial_size)
            expect = tuple(s * p for s, p in zip(want, self.conv_proj.stride))
            if tuple(x.shape[2:]) != expect:
                raise ConfigError(
                    f"{self.model_name or 'mvit'} was built for {expect[0]} frames at {expect[1]}x{expect[2]} "
                    f"(fixed positional embedding), got {tuple(x.shape[2:])}",
                    f"feed {expect[0]}-frame {expect[1]} px clips")
            x = self.conv_proj(x).flatten(2).transpose(1, 2)
            x = self.pos_encoding(x)
            thw = want
            for block in self.blocks:
                x, thw = block(x, thw)
            return self.norm(x)[:, 0]
        # swin3d
        x = self.pos_drop(self.patch_embed(x))
        x = self.norm(self.features(x)).permute(0, 4, 1, 2, 3)
        return self.avgpool(x).flatten(1)


def _build(arch: str, kind: str, num_classes: int, *, pretrained: bool, input_spec: InputSpec,
           dropout: float, **kwargs) -> TorchvisionVideoModel:
    from torchvision.models import get_model, get_model_weights

    extra = dict(kwargs)
    weights = get_model_weights(arch).DEFAULT if pretrained else None
    if kind == "mvit" and (input_spec.num_frames, input_spec.size) != (16, 224):
        raise ConfigError(f"torchvision's {arch} is built for 16 frames at 224 px only, got "
                          f"{input_spec.num_frames} x {input_spec.size}",
                          "drop num_frames/size for this model, or pick swin3d_t / r3d_18 for other clip shapes")
    if kind == "s3d" and (input_spec.num_frames < 13 or input_spec.size <= 192):
        raise ConfigError(f"s3d cannot take {input_spec.num_frames}-frame {input_spec.size} px clips: torchvision's "
                          "S3D pools with a fixed 2x7x7 window", "use at least 13 frames at 224 px (default 16 x 224)")
    try:
        net = get_model(arch, weights=weights, **extra)
    except TypeError as exc:
        raise ConfigError(f"{arch} does not accept an option: {exc}", "see torchvision's documentation") from exc
    return TorchvisionVideoModel(net, kind, num_classes, dropout, input_spec.in_channels, input_spec)


def _register(arch: str, kind: str, spec: InputSpec, description: str):
    def factory(num_classes, *, pretrained=False, input_spec=spec, dropout=0.0, **kwargs):
        return _build(arch, kind, num_classes, pretrained=pretrained, input_spec=input_spec, dropout=dropout,
                      **kwargs)

    factory.__name__ = arch
    register_model(arch, family="torchvision", input_spec=spec, description=description)(factory)


_K = dict(mean=KINETICS_MEAN, std=KINETICS_STD)
_register("r3d_18", "resnet", InputSpec(16, 112, frame_interval=2, **_K),
          "3D ResNet-18 (Tran et al. 2018), torchvision; Kinetics-400 weights with --pretrained")
_register("mc3_18", "resnet", InputSpec(16, 112, frame_interval=2, **_K),
          "Mixed-convolution ResNet-18 (3D then 2D), torchvision")
_register("r2plus1d_18", "resnet", InputSpec(16, 112, frame_interval=2, **_K),
          "R(2+1)D-18, factorised spatio-temporal convolutions, torchvision")
_register("s3d", "s3d", InputSpec(16, 224, frame_interval=2, **_K),
          "S3D (separable 3D Inception), torchvision; needs >= 13 frames at 224 px")
_register("mvit_v1_b", "mvit", InputSpec(16, 224, mean=(0.45,) * 3, std=(0.225,) * 3, frame_interval=4),
          "Multiscale Vision Transformer v1-B, torchvision; input fixed at 16 x 224")
_register("mvit_v2_s", "mvit", InputSpec(16, 224, mean=(0.45,) * 3, std=(0.225,) * 3, frame_interval=4),
          "Multiscale Vision Transformer v2-S, torchvision; input fixed at 16 x 224")
for _a, _d in zip(_SWINS, ("tiny", "small", "base")):
    _register(_a, "swin3d", InputSpec(32, 224, mean=IMAGENET_MEAN, std=IMAGENET_STD, frame_interval=2),
              f"Video Swin Transformer ({_d}), torchvision")


@register_model("test_r3d", family="torchvision",
                input_spec=InputSpec(8, 32, frame_interval=1, **_K))
def test_r3d(num_classes, *, pretrained=False, input_spec=None, dropout=0.0):
    """Tiny torchvision VideoResNet (1 block per stage, 3D convs): real torchvision code path for tests."""
    from torchvision.models.video.resnet import BasicBlock, BasicStem, Conv3DSimple, VideoResNet

    if pretrained:
        raise ConfigError("test_r3d has no pretrained weights", "drop --pretrained")
    net = VideoResNet(BasicBlock, [Conv3DSimple] * 4, [1, 1, 1, 1], BasicStem, num_classes=num_classes)
    return TorchvisionVideoModel(net, "resnet", num_classes, dropout, input_spec.in_channels, input_spec)


class _HaraStem(nn.Sequential):
    """Hara et al.'s 3D ResNet stem: 7x7x7 conv (stride 1x2x2), BN, ReLU, 3x3x3 max-pool of stride 2."""

    def __init__(self):
        super().__init__(nn.Conv3d(3, 64, kernel_size=7, stride=(1, 2, 2), padding=3, bias=False),
                         nn.BatchNorm3d(64), nn.ReLU(inplace=True),
                         nn.MaxPool3d(kernel_size=3, stride=2, padding=1))


_HARA_KEYS = ((re.compile(r"^conv1\.weight$"), "stem.0.weight"),
              (re.compile(r"^bn1\.(.+)$"), r"stem.1.\1"),
              (re.compile(r"^(layer\d+\.\d+)\.conv(\d)\.weight$"), r"\1.conv\2.0.weight"),
              (re.compile(r"^(layer\d+\.\d+)\.bn(\d)\.(.+)$"), r"\1.conv\2.1.\3"),
              (re.compile(r"^head\.(.+)$"), r"fc.\1"))


class Hara3DResNet(TorchvisionVideoModel):
    """Hara et al.'s 3D ResNet (see the module docstring); also reads Hara / video-drl key layouts."""

    def adapt_state_dict(self, sd: dict) -> dict:
        sd = super().adapt_state_dict(sd)
        if "conv1.weight" not in sd:
            return sd
        out = {}
        for k, v in sd.items():
            for pat, rep in _HARA_KEYS:
                if pat.match(k):
                    k = pat.sub(rep, k)
                    break
            out[k] = v
        return out


def _hara(depth: int):
    from torchvision.models.video.resnet import BasicBlock, Bottleneck, Conv3DSimple

    return {18: (BasicBlock, [2, 2, 2, 2]), 50: (Bottleneck, [3, 4, 6, 3])}[depth], Conv3DSimple


def _register_hara(depth: int):
    name = f"resnet3d_{depth}"
    spec = InputSpec(16, 112, frame_interval=1, mean=IMAGENET_MEAN, std=IMAGENET_STD)

    def factory(num_classes, *, pretrained=False, input_spec=spec, dropout=0.0):
        from torchvision.models.video.resnet import VideoResNet

        if pretrained:
            raise ConfigError(f"{name} has no weights to download",
                              "pass --weights FILE (a Hara et al. 3D-ResNets-PyTorch or video-drl checkpoint "
                              "loads as it is), or train from scratch")
        (block, layers), conv = _hara(depth)
        net = VideoResNet(block, [conv] * 4, layers, _HaraStem, num_classes=num_classes)
        return Hara3DResNet(net, "resnet", num_classes, dropout, input_spec.in_channels, input_spec)

    factory.__name__ = name
    register_model(name, family="torchvision", input_spec=spec,
                   description=f"3D ResNet-{depth} of Hara et al. (2018), the DRL paper's model: 7x7x7 stem + "
                               "max-pool (torchvision's r3d_18 has a 3x7x7 stem, no pool); ImageNet normalisation, "
                               "16 frames (1 s at 16 fps)")(factory)


for _depth in (18, 50):
    _register_hara(_depth)


__all__ = ["Hara3DResNet", "TorchvisionVideoModel"]
