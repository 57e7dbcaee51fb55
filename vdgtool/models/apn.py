"""APN: the Adversarial Pyramid Network's relational feature pyramid (Yao, Wang et al., "Adversarial
Pyramid Network for Video Domain Generalization"; released code ``thuml/VideoDG``).

Architecture (spec ``apn.md`` §1; where the paper is explicit it is followed and the released code's
behaviour is an option, where it is silent the code is followed):

* Frame encoder: a timm 2D backbone on each of the M segment frames (``x`` is ``(B, C, M, H, W)``),
  then a D-dimensional projection (``frame_fc``, initialised N(0, 0.001), bias 0) and Dropout(0.8).
  The paper puts the dropout after the projection; ``frame_dropout_first=True`` puts it before, as the
  code does. No nonlinearity follows. Partial BatchNorm (TSN): every BatchNorm of the backbone but the
  first is kept in eval mode with frozen affine parameters.
* Attention block ``AB(X, Y)`` (X: keys = values, Y: queries; the paper's ``Attention-Block(Query=Y,
  Key=X)``), exactly as coded: a one-layer Transformer encoder-decoder without positional encoding.
  ``E = FFN(MHA(X, X, X))``; ``Z = MHA_causal(Y, Y, Y)``; ``Z = FFN(MHA(Z, E, E))``; output
  ``Dropout(0.3)(Z)``. Each MHA projects q, k, v with Linear + ReLU, splits 4 heads, has no output
  projection, and returns ``LN(O + q_input)``; ``FFN(x) = LN(x + W2 ReLU(W1 x))`` with a 4D hidden
  layer; ``LN`` divides by the unbiased standard deviation plus 1e-8. The decoder self-attention is
  causal. The code's NLP padding masks are kept (``padding_masks=True``): a key whose raw input row sums
  to exactly 0 is masked and a query row that sums to 0 gets no attention. They do fire: the inner
  attentions take layer-norm outputs, whose rows sum to exactly 0.0 in float32 about 6 % of the time at
  D = 256 while the LN offsets are 0 (at initialisation); ``padding_masks=False`` removes them. By
  default one block serves every call (``share_blocks``).
* Pyramid: ``R^I_Global = AB(F, F)``; for each local scale k = M-1..2 one k-frame subset S is drawn
  (``consecutive`` windows as the paper says, or any sorted k-``combinations`` as the code draws) and
  ``R^I_k = AB(F_S, F_S)``, ``R^II_k = AB(R^I_k, R^I_Global)`` (queries from the global relation);
  ``R^II = sum_k R^II_k``; ``R^III = R^II + R^I_Global``. All are ``(B, M, D)``.
* Classifier ``h = ReLU -> Linear(M*D, C)`` on the flattened feature, shared by every level.
  ``forward(x) = h(flatten(R^III))`` (``level`` picks another level); :meth:`APN.forward_pyramid`
  returns every level's logits and features from one pass with one set of subsets.

Subsets are one per scale for the whole batch, drawn from the torch RNG in training mode. In eval mode
they are deterministic (the code draws them at random there too): ``eval_subsets="fixed"`` takes one
fixed subset per scale (the centred window, or the evenly spread combination), ``"mean"`` averages the
pyramid features over ``eval_draws`` subsets per scale spread evenly over the candidates (all of them
when ``eval_draws`` is at least their number).
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from vdgtool.errors import ConfigError
from vdgtool.models.base import VideoModel
from vdgtool.models.registry import IMAGENET_MEAN, IMAGENET_STD, InputSpec, register_model
from vdgtool.models.tsn import _spec_from_backbone, create_backbone, frames_to_batch

#: the score a masked key gets (the released code's ``-2**32 + 1``: it replaces the score, not adds to it)
MASK_VALUE = -(2.0 ** 32) + 1
SUBSET_RULES = ("consecutive", "combinations")
EVAL_SUBSETS = ("fixed", "mean")
LEVELS = ("III", "II", "global")


class CodeLayerNorm(nn.Module):
    """``weight * (x - mean) / (std + eps) + bias`` over the last dimension with the *unbiased* std.

    The released code's layer normalisation; ``torch.nn.LayerNorm`` uses the biased variance and puts
    eps inside the square root, so it is not used here. Computed in float32 under autocast.
    """

    def __init__(self, dim: int, eps: float = 1e-8):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        y = (x32 - x32.mean(-1, keepdim=True)) / (x32.std(-1, keepdim=True) + self.eps)
        return (self.weight * y + self.bias).to(x.dtype)


class ReluAttention(nn.Module):
    """Multi-head attention as coded: ReLU-activated q/k/v projections, no output projection,
    ``LN(softmax(q k^T / sqrt(d_head) + masks) v + queries)``."""

    def __init__(self, dim: int, heads: int, dropout: float, causal: bool, padding_masks: bool = True):
        super().__init__()
        self.heads, self.causal, self.padding_masks = heads, causal, padding_masks
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.norm = CodeLayerNorm(dim)

    def _split(self, t: torch.Tensor) -> torch.Tensor:  # (B, n, D) -> (B, heads, n, D/heads)
        b, n, d = t.shape
        return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        b, nq, d = queries.shape
        nk = keys.shape[1]
        q, k, v = (self._split(F.relu(p(t))) for p, t in ((self.q, queries), (self.k, keys), (self.v, values)))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        masked = torch.zeros(1, 1, nq, nk, dtype=torch.bool, device=keys.device)
        if self.padding_masks:  # the NLP original's padding mask: a raw key row that sums to exactly 0
            masked = masked | (keys.sum(-1) == 0)[:, None, None, :]
        if self.causal:
            masked = masked | torch.ones(nq, nk, dtype=torch.bool, device=keys.device).triu(1)
        scores = scores.masked_fill(masked, max(MASK_VALUE, torch.finfo(scores.dtype).min))
        attn = scores.softmax(-1)
        if self.padding_masks:  # ... and its query mask: no attention for a query row that sums to 0
            attn = attn * (queries.sum(-1) != 0)[:, None, :, None].to(attn.dtype)
        out = (self.drop(attn).to(v.dtype) @ v).transpose(1, 2).reshape(b, nq, d)
        return self.norm(out + queries)


class FeedForward(nn.Module):
    """``LN(x + W2 ReLU(W1 x + b1) + b2)``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.norm = CodeLayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.fc2(F.relu(self.fc1(x))))


class AttentionBlock(nn.Module):
    """``AB(x, y)``: x ``(B, n, D)`` is the key/value source, y ``(B, n', D)`` the query source;
    returns ``(B, n', D)``. Output position t depends on all of x but only on y[:, :t+1]."""

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.3, ffn_mult: int = 4, padding_masks: bool = True):
        super().__init__()
        self.enc_attn = ReluAttention(dim, heads, dropout, False, padding_masks)
        self.enc_ffn = FeedForward(dim, ffn_mult * dim)
        self.dec_self_attn = ReluAttention(dim, heads, dropout, True, padding_masks)
        self.dec_cross_attn = ReluAttention(dim, heads, dropout, False, padding_masks)
        self.dec_ffn = FeedForward(dim, ffn_mult * dim)
        self.out_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        enc = self.enc_ffn(self.enc_attn(x, x, x))
        dec = self.dec_self_attn(y, y, y)
        dec = self.dec_ffn(self.dec_cross_attn(dec, enc, enc))
        return self.out_drop(dec)


def subset_candidates(num_segments: int, k: int, rule: str) -> list[tuple[int, ...]]:
    """The k-frame subsets a local scale draws from: ``consecutive`` windows (paper) or every sorted
    k-combination (code), in lexicographic order."""
    if rule == "consecutive":
        return [tuple(range(s, s + k)) for s in range(num_segments - k + 1)]
    return list(itertools.combinations(range(num_segments), k))


def _fixed_subset(num_segments: int, k: int, rule: str) -> tuple[int, ...]:
    if rule == "consecutive":  # the centred window
        s = (num_segments - k) // 2
        return tuple(range(s, s + k))
    # the combination spread evenly over the clip: round(linspace(0, M-1, k)); distinct since k <= M
    return tuple(int(math.floor(i * (num_segments - 1) / (k - 1) + 0.5)) for i in range(k))


class APN(VideoModel):
    """The APN relational pyramid on a 2D backbone, built for a fixed number of segments M >= 3."""

    classifier_path = "head"

    def __init__(self, backbone: nn.Module, num_classes: int, in_channels: int, num_segments: int, *,
                 feature_dim: int = 256, frame_dropout: float = 0.8, frame_dropout_first: bool = False,
                 num_heads: int = 4, attn_dropout: float = 0.3, ffn_mult: int = 4, share_blocks: bool = True,
                 subsets: str = "consecutive", eval_subsets: str = "fixed", eval_draws: int = 3,
                 partial_bn: bool = True, level: str = "III", padding_masks: bool = True, dropout: float = 0.0):
        super().__init__()
        _check_options(num_segments, feature_dim, frame_dropout, num_heads, attn_dropout, ffn_mult, subsets,
                       eval_subsets, eval_draws, level, dropout)
        self.backbone = backbone
        self.in_channels = in_channels
        self.num_segments = m = int(num_segments)
        self.feature_dim = d = int(feature_dim)
        self.frame_dropout_first = bool(frame_dropout_first)
        self.frame_drop = nn.Dropout(frame_dropout)
        self.frame_fc = nn.Linear(backbone.num_features, d)
        nn.init.normal_(self.frame_fc.weight, 0.0, 0.001)
        nn.init.zeros_(self.frame_fc.bias)
        self.share_blocks = bool(share_blocks)
        self.subset_rule, self.eval_subsets, self.eval_draws = subsets, eval_subsets, int(eval_draws)
        self.level = level
        self.local_scales = list(range(m - 1, 1, -1))  # the code's order: M-1, ..., 2
        self.candidates = {k: subset_candidates(m, k, subsets) for k in self.local_scales}
        # block 0: the global relation; 1 + 2j / 2 + 2j: the within / cross relation of local scale j.
        # Unshared blocks that `level="global"` never calls are not built (DDP needs every parameter used).
        n_blocks = 1 if self.share_blocks or level == "global" else 1 + 2 * len(self.local_scales)
        self.blocks = nn.ModuleList(AttentionBlock(d, num_heads, attn_dropout, ffn_mult, bool(padding_masks))
                                    for _ in range(n_blocks))
        self.num_features = m * d
        self.head_drop = nn.Dropout(dropout)
        self.head = self._build_classifier(num_classes)
        self.num_classes = num_classes
        self.partial_bn = bool(partial_bn)
        if self.partial_bn:
            for bn in self._frozen_bn():
                for p in bn.parameters():
                    p.requires_grad_(False)

    # -- classifier h and partial BN -----------------------------------------------------------------
    def _build_classifier(self, num_classes: int) -> nn.Module:
        return nn.Sequential(nn.ReLU(), nn.Linear(self.num_features, num_classes))

    def _frozen_bn(self) -> list[nn.Module]:
        bns = [mod for mod in self.backbone.modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)]
        return bns[1:]

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.partial_bn:
            for bn in self._frozen_bn():
                bn.eval()
        return self

    # -- subsets -------------------------------------------------------------------------------------
    def sample_subsets(self, train: bool | None = None) -> dict[int, list[tuple[int, ...]]]:
        """The subsets a forward pass uses, ``{k: [subset, ...]}`` for each local scale k = M-1..2.

        Training (``train`` defaults to ``self.training``): one subset per scale, uniform over the
        candidates, from the torch RNG. Evaluation: the deterministic choice of ``eval_subsets``.
        Pass the result to :meth:`forward_pyramid` to reuse one draw over several passes.
        """
        train = self.training if train is None else train
        out = {}
        for k in self.local_scales:
            cands = self.candidates[k]
            if train:
                out[k] = [cands[int(torch.randint(len(cands), (1,)))]]
            elif self.eval_subsets == "fixed" or self.eval_draws == 1:
                out[k] = [_fixed_subset(self.num_segments, k, self.subset_rule)]
            else:
                n = min(self.eval_draws, len(cands))
                out[k] = [cands[int(math.floor(i * (len(cands) - 1) / (n - 1) + 0.5))] for i in range(n)]
        return out

    def _check_subsets(self, subsets) -> dict[int, list[tuple[int, ...]]]:
        if set(subsets) != set(self.local_scales):
            raise ConfigError(f"subsets given for scales {sorted(subsets)}, the model has {self.local_scales}",
                              "pass one entry per local scale, as sample_subsets() returns")
        out = {}
        for k in self.local_scales:
            subs = [tuple(int(i) for i in s) for s in subsets[k]]
            if not subs or any(len(s) != k or len(set(s)) != k or min(s) < 0 or max(s) >= self.num_segments
                               for s in subs):
                raise ConfigError(f"scale {k} needs subsets of {k} distinct frame indices in [0, "
                                  f"{self.num_segments}), got {subsets[k]}", "use sample_subsets()")
            out[k] = subs
        return out

    # -- forward -------------------------------------------------------------------------------------
    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """Projected per-segment features F_M ``(B, M, D)``."""
        self.check_input(x)
        if x.shape[2] != self.num_segments:
            raise ConfigError(f"{self.model_name or 'apn'} was built for {self.num_segments} segments, got "
                              f"{x.shape[2]} frames", "feed clips of that length or create the model with num_frames")
        b = x.shape[0]
        f = self.backbone(frames_to_batch(x)).reshape(b, self.num_segments, -1)
        if self.frame_dropout_first:
            return self.frame_fc(self.frame_drop(f))
        return self.frame_drop(self.frame_fc(f))

    def _block(self, idx: int) -> AttentionBlock:
        return self.blocks[0 if len(self.blocks) == 1 else idx]

    def relations(self, f: torch.Tensor, subsets=None, global_only: bool = False) -> dict:
        """The pyramid on projected frame features ``f`` ``(B, M, D)`` (hand-made features welcome).

        Returns ``{"global": R^I_Global, "II": R^II, "III": R^III}`` (each ``(B, M, D)``), ``"local"``:
        ``{k: (n_subsets, B, k, D)}`` (the within relations R^I_k) and ``"subsets"``. With several subsets
        per scale (``eval_subsets="mean"``) the cross relations of a scale are averaged over them.
        """
        b, m, d = f.shape
        g = self._block(0)(f, f)
        if global_only:
            return {"global": g}
        if len(self.blocks) == 1 and not self.share_blocks:
            raise ConfigError("this APN was built with level=global and share_blocks=false: it has no local blocks",
                              "create it with share_blocks=true or another level")
        subsets = self._check_subsets(subsets if subsets is not None else self.sample_subsets())
        r2 = torch.zeros_like(g)
        local = {}
        for j, k in enumerate(self.local_scales):
            subs = subsets[k]
            n = len(subs)
            fs = f[:, torch.tensor(subs, device=f.device).flatten()].view(b, n, k, d).transpose(0, 1)
            fs = fs.reshape(n * b, k, d)  # all subsets of the scale in one batched call
            loc = self._block(1 + 2 * j)(fs, fs)
            cross = self._block(2 + 2 * j)(loc, g if n == 1 else g.repeat(n, 1, 1))
            r2 = r2 + cross.view(n, b, m, d).mean(0)
            local[k] = loc.view(n, b, k, d)
        return {"global": g, "II": r2, "III": r2 + g, "local": local, "subsets": subsets}

    def forward_pyramid(self, x: torch.Tensor, subsets=None) -> dict:
        """One pass, one set of subsets, every level (what video ADA needs).

        ``x``: ``(B, C, M, H, W)``; ``subsets``: ``None`` (draw as :meth:`sample_subsets` does) or its
        result, to reuse a draw. Returns ``{"logits": {lvl: (B, C)}, "features": {lvl: (B, M*D)},
        "relations": {lvl: (B, M, D)}, "local": {k: (n, B, k, D)}, "subsets": {k: [...]}}`` for
        ``lvl`` in ``"III"``, ``"II"``, ``"global"``. Features are the flattened relations before the
        head's ReLU (what the classifier h sees); ``logits[lvl] = forward_head(features[lvl])``.
        """
        rel = self.relations(self.frame_features(x), subsets)
        feats = {lvl: rel[lvl].flatten(1) for lvl in LEVELS}
        return {"logits": {lvl: self.forward_head(z) for lvl, z in feats.items()}, "features": feats,
                "relations": {lvl: rel[lvl] for lvl in LEVELS}, "local": rel["local"], "subsets": rel["subsets"]}

    def forward(self, x: torch.Tensor, with_features: bool = False, *, pyramid: bool = False, subsets=None):
        """Logits of the built level (with ``with_features``: the pair (logits, features), as every
        VideoModel); ``pyramid=True`` returns :meth:`forward_pyramid`'s dict instead, the way to reach it
        through a DDP wrapper: ``ddp_model(x, pyramid=True, subsets=s)``."""
        if pyramid:
            return self.forward_pyramid(x, subsets)
        if subsets is not None:
            raise ConfigError("subsets= is for pyramid=True", "call forward(x, pyramid=True, subsets=...)")
        return super().forward(x, with_features)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """flatten(R^level) ``(B, M*D)``, ``level`` as built (default III)."""
        rel = self.relations(self.frame_features(x), global_only=self.level == "global")
        return rel[self.level].flatten(1)

    def forward_frames(self, x):  # relations have no per-frame logits
        raise ConfigError("APN has no per-frame predictions", "use forward(x), or tsn/frame2d for per-frame logits")


def _check_options(m, feature_dim, frame_dropout, num_heads, attn_dropout, ffn_mult, subsets, eval_subsets,
                   eval_draws, level, dropout) -> None:
    if int(m) < 3:
        raise ConfigError(f"APN needs at least 3 segments (one local scale), got {m}",
                          "use --num-frames 5 (UCF-HMDB, Something-Something) or 3 (PKU-MMD, NTU)")
    if int(feature_dim) < 1 or int(num_heads) < 1 or int(feature_dim) % int(num_heads):
        raise ConfigError(f"feature_dim={feature_dim} must be a positive multiple of num_heads={num_heads}",
                          "use e.g. feature_dim=256 num_heads=4")
    if int(ffn_mult) < 1:
        raise ConfigError(f"ffn_mult={ffn_mult} must be at least 1", "use the default 4")
    for name, p in (("frame_dropout", frame_dropout), ("attn_dropout", attn_dropout), ("dropout", dropout)):
        if not 0.0 <= float(p) < 1.0:
            raise ConfigError(f"{name}={p} is not a probability in [0, 1)", f"pass {name}=0.8, 0.3 or 0")
    for name, v, allowed in (("subsets", subsets, SUBSET_RULES), ("eval_subsets", eval_subsets, EVAL_SUBSETS),
                             ("level", level, LEVELS)):
        if v not in allowed:
            raise ConfigError(f"{name}={v!r} is not one of {', '.join(allowed)}", f"pass {name}={allowed[0]}")
    if isinstance(eval_draws, bool) or int(eval_draws) != eval_draws or int(eval_draws) < 1:
        raise ConfigError(f"eval_draws={eval_draws!r} must be a positive integer", "use e.g. eval_draws=3")


# ---------------------------------------------------------------------------------------- registry
#: every APN option and its default (the paper's values; test_apn shrinks D)
APN_OPTIONS = {"feature_dim": 256, "frame_dropout": 0.8, "frame_dropout_first": False, "num_heads": 4,
               "attn_dropout": 0.3, "ffn_mult": 4, "share_blocks": True, "subsets": "consecutive",
               "eval_subsets": "fixed", "eval_draws": 3, "partial_bn": True, "level": "III", "padding_masks": True}


def _register(name: str, spec: InputSpec, default_backbone: str, defaults: dict, description: str):
    def factory(num_classes, *, pretrained=False, input_spec=spec, dropout=0.0, backbone=default_backbone,
                backbone_kwargs=None, **kw):
        bad = set(kw) - set(APN_OPTIONS)
        if bad:
            raise ConfigError(f"model {name!r} does not accept option(s) {', '.join(sorted(bad))}",
                              "apn options: backbone, backbone_kwargs, " + ", ".join(APN_OPTIONS))
        if name.startswith("test_") and pretrained:
            raise ConfigError(f"{name} has no pretrained weights", "drop --pretrained")
        opts = {**defaults, **kw}
        _check_options(input_spec.num_frames, opts["feature_dim"], opts["frame_dropout"], opts["num_heads"],
                       opts["attn_dropout"], opts["ffn_mult"], opts["subsets"], opts["eval_subsets"],
                       opts["eval_draws"], opts["level"], dropout)  # before building a large backbone
        bb = create_backbone(backbone, pretrained=pretrained, in_channels=input_spec.in_channels,
                             **(backbone_kwargs or {}))
        model = APN(bb, num_classes, input_spec.in_channels, input_spec.num_frames, dropout=dropout, **opts)
        model.input_spec = _spec_from_backbone(input_spec, bb)
        model.resolved_kwargs = opts  # recorded in create_kwargs (config.json), defaults included
        return model

    factory.__name__ = name
    register_model(name, family="apn", input_spec=spec, description=description,
                   default_backbone=default_backbone)(factory)


_IN = dict(mean=IMAGENET_MEAN, std=IMAGENET_STD, sampler="uniform")
# resnet50.tv_in1k: torchvision's ImageNet weights, what the released code loads
_register("apn", InputSpec(5, 224, **_IN), "resnet50.tv_in1k", APN_OPTIONS,
          "APN: relational attention pyramid (levels I-III) on a timm 2D backbone, M segments")
_register("test_apn", InputSpec(5, 32, **_IN), "test_resnet", {**APN_OPTIONS, "feature_dim": 32},
          "apn on timm's tiny test_resnet backbone with D = 32, for tests")
