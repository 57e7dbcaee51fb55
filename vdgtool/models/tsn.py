"""Video models on any timm 2D backbone: TSN, TSM, TRN and the per-frame ``frame2d`` model.

The backbone (``timm.create_model(name, num_classes=0)``) maps each frame to a pooled feature vector.

* TSN (Wang et al. 2016): average consensus of per-frame logits. Because the classifier is linear,
  averaging the frame features first and classifying once gives the same logits, so
  ``forward_features`` is the frame-feature mean and TSN-avg is exactly frame-order invariant.
* ``frame2d``: the same network with dense (consecutive-frame) sampling: the purely spatial student
  of Dynamic Representation Learning.
* TSM (Lin et al. 2019): TSN plus a temporal shift of 1/8 of the channels forward and 1/8 backward in
  time, inserted on the residual branch of every residual block ("residual shift", before the block's
  first convolution). Supported blocks: timm ResNet/ResNeXt (BasicBlock, Bottleneck), MobileNetV2 /
  EfficientNet (InvertedResidual, DepthwiseSeparableConv with a skip) and ConvNeXt blocks.
* TRN (Zhou et al. 2018): multi-scale temporal relations. Frame features are projected to 256-d; for
  each scale k = T..2 up to 3 ordered k-frame subsets (all for k = T) go through a 2-layer MLP; the
  pooled feature is the concatenation over scales of the summed relation activations and the
  classifier is linear on it (= the original per-scale classifiers summed). Subsets are drawn at random
  in training mode and fixed (evenly spaced) in eval mode.

Every family takes ``sampler="dense"|"uniform"`` (``--model-arg sampler=dense``) to replace its default
frame sampling: e.g. the DRL release's TSM reads 8 consecutive frames at 8 fps (a 1-second clip:
``sampler=dense`` with ``--frame-interval 2`` on a 16-fps store) instead of TSN segments over the video.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from vdgtool.errors import ConfigError
from vdgtool.models.base import VideoModel
from vdgtool.models.registry import IMAGENET_MEAN, IMAGENET_STD, InputSpec, register_model


def create_backbone(name: str, *, pretrained: bool, in_channels: int, **kwargs) -> nn.Module:
    """A timm 2D network returning pooled features (``num_classes=0``)."""
    import timm

    if not timm.is_model(name):
        import difflib

        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        raise ConfigError(f"unknown timm backbone {name!r}",
                          (f"did you mean {', '.join(close)}? " if close else "")
                          + "see timm.list_models() for valid names")
    return timm.create_model(name, pretrained=pretrained, num_classes=0, in_chans=in_channels, **kwargs)


def _spec_from_backbone(spec: InputSpec, backbone: nn.Module) -> InputSpec:
    """Use the backbone's own normalisation (ImageNet for most timm models, 0.5 for many ViTs)."""
    from dataclasses import replace

    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    mean, std = cfg.get("mean"), cfg.get("std")
    if spec.modality == "rgb" and mean and std and len(mean) == spec.in_channels:
        return replace(spec, mean=tuple(mean), std=tuple(std))
    return spec


def frames_to_batch(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W), frame-major within each clip."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


class FrameModel(VideoModel):
    """TSN / frame2d: a 2D backbone on every frame, averaged (consensus "avg")."""

    def __init__(self, backbone: nn.Module, num_classes: int, in_channels: int, dropout: float):
        super().__init__()
        self.backbone = backbone
        self.in_channels = in_channels
        self.num_features = backbone.num_features
        self.head_drop = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)
        self.num_classes = num_classes

    def _before_backbone(self, num_frames: int) -> None:
        pass

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-frame pooled features (B, T, D)."""
        self.check_input(x)
        b, t = x.shape[0], x.shape[2]
        self._before_backbone(t)
        return self.backbone(frames_to_batch(x)).reshape(b, t, -1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.frame_features(x).mean(dim=1)

    def forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Per-frame logits (B, T, num_classes); their mean over T equals ``forward(x)``."""
        return self.forward_head(self.frame_features(x))


# --------------------------------------------------------------------------------------------- TSM
def temporal_shift(x: torch.Tensor, num_segments: int, shift_div: int = 8) -> torch.Tensor:
    """Shift 1/shift_div of the channels one step back in time, 1/shift_div forward; zero-filled."""
    nt, c = x.shape[:2]
    if nt % num_segments:
        raise ConfigError(f"temporal shift got {nt} frames, not a multiple of {num_segments} segments",
                          "feed clips of the model's frame count")
    v = x.reshape(nt // num_segments, num_segments, *x.shape[1:])
    fold = c // shift_div
    out = torch.zeros_like(v)
    out[:, :-1, :fold] = v[:, 1:, :fold]  # frame t sees frame t+1
    out[:, 1:, fold:2 * fold] = v[:, :-1, fold:2 * fold]  # frame t sees frame t-1
    out[:, :, 2 * fold:] = v[:, :, 2 * fold:]
    return out.reshape(x.shape)


class TemporalShift(nn.Module):
    """Wraps the first layer of a residual branch: shift, then run it (keys ``<layer>.net.*``, as in
    the reference TSM code)."""

    def __init__(self, net: nn.Module, shift_div: int = 8):
        super().__init__()
        self.net = net
        self.shift_div = shift_div
        self.num_segments = 1

    def forward(self, x):
        return self.net(temporal_shift(x, self.num_segments, self.shift_div))

    def extra_repr(self) -> str:
        return f"shift_div={self.shift_div}"


# block class name -> attribute of its first residual-branch layer (only for blocks with a skip)
_SHIFT_SITES = {"BasicBlock": "conv1", "Bottleneck": "conv1", "InvertedResidual": "conv_pw",
                "DepthwiseSeparableConv": "conv_dw", "EdgeResidual": "conv_exp", "ConvNeXtBlock": "conv_dw"}


def insert_temporal_shift(backbone: nn.Module, shift_div: int = 8) -> int:
    """Wrap the first layer of every residual block; returns how many shifts were inserted."""
    sites = []
    for mod in backbone.modules():
        attr = _SHIFT_SITES.get(type(mod).__name__)
        if attr is None or not hasattr(mod, attr) or isinstance(getattr(mod, attr), TemporalShift):
            continue
        if hasattr(mod, "has_skip") and not mod.has_skip:
            continue
        sites.append((mod, attr))
    for mod, attr in sites:
        setattr(mod, attr, TemporalShift(getattr(mod, attr), shift_div))
    return len(sites)


class TSM(FrameModel):
    def __init__(self, backbone, num_classes, in_channels, dropout, shift_div: int = 8, backbone_name: str = ""):
        super().__init__(backbone, num_classes, in_channels, dropout)
        if shift_div < 2:
            raise ConfigError(f"shift_div={shift_div} must be at least 2", "use the default 8")
        n = insert_temporal_shift(self.backbone, shift_div)
        if n == 0:
            raise ConfigError(
                f"TSM found no residual block to shift in backbone {backbone_name!r}",
                "use a ResNet/ResNeXt, MobileNetV2/EfficientNet or ConvNeXt backbone, or tsn/trn for this one")
        self.shift_div = shift_div

    def _before_backbone(self, num_frames: int) -> None:
        for m in self.modules():
            if isinstance(m, TemporalShift):
                m.num_segments = num_frames


# --------------------------------------------------------------------------------------------- TRN
class TRN(FrameModel):
    """Multi-scale temporal relation network head on per-frame features (built for a fixed T)."""

    def __init__(self, backbone, num_classes, in_channels, dropout, num_frames: int,
                 relation_dim: int = 256, subsample: int = 3):
        VideoModel.__init__(self)
        if num_frames < 2:
            raise ConfigError(f"TRN needs at least 2 frames, got {num_frames}", "use num_frames >= 2 (default 8)")
        self.backbone = backbone
        self.in_channels = in_channels
        self.num_frames = num_frames
        self.frame_fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(backbone.num_features, relation_dim))
        self.scales = list(range(num_frames, 1, -1))
        self.subsample = subsample
        self.relations = {k: list(itertools.combinations(range(num_frames), k)) for k in self.scales}
        self.relation_mlps = nn.ModuleList(
            nn.Sequential(nn.ReLU(), nn.Linear(k * relation_dim, relation_dim), nn.ReLU()) for k in self.scales)
        self.num_features = relation_dim * len(self.scales)
        self.head_drop = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)
        self.num_classes = num_classes

    def _pick(self, k: int) -> list[tuple[int, ...]]:
        rel = self.relations[k]
        n = 1 if k == self.num_frames else min(self.subsample, len(rel))
        if len(rel) <= n:
            return rel
        if self.training:
            idx = torch.randperm(len(rel))[:n].sort().values.tolist()
        else:
            idx = [round(i * (len(rel) - 1) / (n - 1)) for i in range(n)] if n > 1 else [len(rel) // 2]
        return [rel[i] for i in idx]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5 and x.shape[2] != self.num_frames:
            raise ConfigError(f"{self.model_name or 'trn'} was built for {self.num_frames} frames, got {x.shape[2]}",
                              "feed clips of that length or create the model with num_frames")
        f = self.frame_fc(self.frame_features(x))  # (B, T, R)
        out = []
        for k, mlp in zip(self.scales, self.relation_mlps):
            out.append(sum(mlp(f[:, list(sub)].flatten(1)) for sub in self._pick(k)))
        return torch.cat(out, dim=1)

    def forward_frames(self, x):  # relations have no per-frame logits
        raise ConfigError("TRN has no per-frame predictions", "use forward(x), or tsn/frame2d for per-frame logits")


# ---------------------------------------------------------------------------------------- registry
def _build(kind: str, num_classes: int, *, pretrained: bool, input_spec: InputSpec, dropout: float,
           backbone: str, shift_div: int = 8, relation_dim: int = 256, subsample: int = 3,
           backbone_kwargs: dict | None = None, sampler: str | None = None):
    if sampler is not None:
        from dataclasses import replace

        input_spec = replace(input_spec, sampler=str(sampler))
    bb = create_backbone(backbone, pretrained=pretrained, in_channels=input_spec.in_channels,
                         **(backbone_kwargs or {}))
    c = input_spec.in_channels
    if kind == "tsm":
        model = TSM(bb, num_classes, c, dropout, shift_div=shift_div, backbone_name=backbone)
    elif kind == "trn":
        model = TRN(bb, num_classes, c, dropout, input_spec.num_frames, relation_dim, subsample)
    else:
        model = FrameModel(bb, num_classes, c, dropout)
    model.input_spec = _spec_from_backbone(input_spec, bb)
    return model


_OPTS = {"tsn": {"sampler"}, "frame2d": {"sampler"}, "tsm": {"shift_div", "sampler"},
         "trn": {"relation_dim", "subsample", "sampler"}}


def _register(name: str, kind: str, spec: InputSpec, default_backbone: str, description: str):
    def factory(num_classes, *, pretrained=False, input_spec=spec, dropout=0.0, backbone=default_backbone,
                backbone_kwargs=None, **kw):
        bad = set(kw) - _OPTS[kind]
        if bad:
            raise ConfigError(f"model {name!r} does not accept option(s) {', '.join(sorted(bad))}",
                              f"{kind} options: backbone, backbone_kwargs"
                              + "".join(f", {o}" for o in sorted(_OPTS[kind])))
        if name.startswith("test_") and pretrained:
            raise ConfigError(f"{name} has no pretrained weights", "drop --pretrained")
        return _build(kind, num_classes, pretrained=pretrained, input_spec=input_spec, dropout=dropout,
                      backbone=backbone, backbone_kwargs=backbone_kwargs, **kw)

    factory.__name__ = name
    register_model(name, family=kind, input_spec=spec, description=description,
                   default_backbone=default_backbone)(factory)


_IN = dict(mean=IMAGENET_MEAN, std=IMAGENET_STD)
_register("tsn", "tsn", InputSpec(8, 224, sampler="uniform", **_IN), "resnet50",
          "TSN: timm 2D backbone per segment, average consensus (frame-order invariant)")
_register("tsm", "tsm", InputSpec(8, 224, sampler="uniform", **_IN), "resnet50",
          "TSM: TSN with residual temporal shift (1/8 channels each way) in every residual block")
_register("trn", "trn", InputSpec(8, 224, sampler="uniform", **_IN), "resnet50",
          "TRN: multi-scale temporal relation head on a timm 2D backbone")
_register("frame2d", "frame2d", InputSpec(8, 224, sampler="dense", **_IN), "resnet18",
          "Per-frame 2D network, logits averaged over frames (spatial student for DRL); same as TSN")
for _n, _k in (("test_tsn", "tsn"), ("test_tsm", "tsm"), ("test_trn", "trn"), ("test_frame2d", "frame2d")):
    _register(_n, _k, InputSpec(8, 32, sampler="dense" if _k == "frame2d" else "uniform", **_IN), "test_resnet",
              f"{_k} on timm's tiny test_resnet backbone, for tests")
