"""The worst-case augmentation search over a transformation set (Ani-GIFs, after Volpi & Murino 2019).

A *candidate* is a composition of ``L`` grid points ``(op, level_index, value)`` of a transformation
set (``vdgtool.augment.sets.grid``); L = 1 is one (op, level). The search scores candidates on a set
of clips by the model's top-1 error on the transformed clips (every frame of a clip transformed with
the same parameters), ties broken by the larger mean cross-entropy, and the worst one joins the
training set T (``vdgtool.methods.augsearch``). The same scoring over the whole grid is the
vulnerability table of ``vdgtool augsearch CKPT --eval-only`` (``vdgtool.evaluate.vulnerability``).

Everything here works on *normalised* model inputs (B, C, T, H, W): clips are converted to pixels in
[0, 1] with the model's mean / std (:class:`vdgtool.methods.adversarial.PixelBox`), transformed, and
converted back, so the transformation comes after crop / flip / jitter and before normalisation.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vdgtool.augment.sets import SET_OPS, apply_op, grid
from vdgtool.errors import ConfigError

#: a grid point: (op name, index in the op's level list, value in the op's unit)
GridPoint = tuple[str, int, float]


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A composition of grid points, applied in order (empty = the identity)."""

    steps: tuple[GridPoint, ...] = ()

    @property
    def is_identity(self) -> bool:
        return not self.steps

    @property
    def name(self) -> str:
        return "+".join(op for op, _, _ in self.steps) or "identity"

    def ops(self) -> list[tuple[str, float]]:
        """The ``apply_batch`` entry of this candidate."""
        return [(op, v) for op, _, v in self.steps]

    def describe(self) -> dict:
        """op, level, value and magnitude (scalars for one step, lists for a composition)."""
        if len(self.steps) == 1:
            op, i, v = self.steps[0]
            return {"op": op, "level": i, "value": v, "magnitude": magnitude(op, i)}
        return {"op": self.name, "level": [i for _, i, _ in self.steps], "value": [v for _, _, v in self.steps],
                "magnitude": [magnitude(op, i) for op, i, _ in self.steps]}

    def to_state(self) -> list:
        """JSON / weights_only-safe form: ``[[op, level_index, value], ...]``."""
        return [[op, int(i), float(v)] for op, i, v in self.steps]

    @classmethod
    def from_state(cls, state) -> "Candidate":
        try:
            steps = tuple((str(op), int(i), float(v)) for op, i, v in state)
        except (TypeError, ValueError):
            raise ConfigError(f"cannot read the augmentation {state!r} of the method state",
                              "the checkpoint is damaged; resume from another one") from None
        for op, i, v in steps:
            if op not in SET_OPS:
                raise ConfigError(f"the method state names augmentation op '{op}', which this vdgtool lacks",
                                  "use the vdgtool version that wrote the checkpoint")
        return cls(steps)

    def apply(self, video01: torch.Tensor) -> torch.Tensor:
        """Every clip of ``video01`` (B, 3, T, H, W) in [0, 1] transformed by this candidate."""
        for op, _, v in self.steps:
            video01 = apply_op(video01, op, v)
        return video01


IDENTITY_CANDIDATE = Candidate(())


def magnitude(op: str, level_index: int) -> float:
    """How strong a grid level is, in (0, 1]: for an op with an identity value, the distance of the level
    from it relative to the op's farthest grid level (factor 1.4 and 0.6 are both 1.0, offset -120 is
    1.0, -41 is 0.34); for an op without one (autocontrast, equalize, invert, quantize), the level's
    position in its list, (i + 1) / n (quantize K = 256 is 1/6, K = 8 is 1)."""
    o = SET_OPS[op]
    levels = np.asarray(o.levels, dtype=np.float64)
    i = int(level_index)
    if o.identity is None or len(levels) == 1:
        return (i + 1) / len(levels) if len(levels) > 1 else 1.0
    d = np.abs(levels - float(o.identity))
    return float(d[i] / d.max()) if d.max() > 0 else 1.0


def ops_grid(ops: str) -> list[GridPoint]:
    """The (op, level) grid of a set name (``pil10``, ``autoaugment+gif``, ...), refused when empty."""
    g = grid(ops)
    if not g:
        raise ConfigError(f"transformation set '{ops}' has no grid points", "pass a set with ops, e.g. pil10")
    return g


def draw_candidates(points: Sequence[GridPoint], n: int, compose: int, rng: np.random.Generator,
                    exclude: Iterable[Candidate] = ()) -> list[Candidate]:
    """``n`` distinct candidates of ``compose`` grid points each, drawn uniformly without replacement,
    none of them in ``exclude`` (the members of T). With ``compose == 1`` every grid point not in T is a
    candidate at most once; fewer than ``n`` are returned when the grid has fewer left."""
    if int(compose) < 1:
        raise ConfigError(f"compose={compose} must be at least 1", "pass --hp compose=1 (one op per candidate)")
    excluded = {c.steps for c in exclude}
    points = list(points)
    if compose == 1:
        left = [p for p in points if (p,) not in excluded]
        pick = rng.permutation(len(left))[:n]
        return [Candidate((left[int(i)],)) for i in pick]
    out: list[Candidate] = []
    seen = set(excluded)
    space = len(points) ** compose
    tries = 0
    while len(out) < n and len(seen) < space and tries < 50 * n:
        tries += 1
        steps = tuple(points[int(i)] for i in rng.integers(0, len(points), size=compose))
        if steps not in seen:
            seen.add(steps)
            out.append(Candidate(steps))
    return out


def random_candidates(points: Sequence[GridPoint], count: int, compose: int, rng: np.random.Generator) -> list[Candidate]:
    """``count`` independent random compositions (with replacement): RDA's per-clip draw."""
    idx = rng.integers(0, len(points), size=(int(count), int(compose)))
    return [Candidate(tuple(points[int(j)] for j in row)) for row in idx]


@dataclasses.dataclass
class Fitness:
    """Error and cross-entropy of a candidate on the clips scored so far."""

    errors: float = 0.0
    ce: float = 0.0
    n: int = 0

    @property
    def error(self) -> float:
        return self.errors / self.n if self.n else float("nan")

    @property
    def accuracy(self) -> float:
        return 1.0 - self.error if self.n else float("nan")

    @property
    def mean_ce(self) -> float:
        return self.ce / self.n if self.n else float("nan")

    def add(self, other: "Fitness") -> None:
        self.errors += other.errors
        self.ce += other.ce
        self.n += other.n


class CandidateScorer:
    """Accumulates the fitness of a fixed list of candidates (identity first) over batches of clips.

    ``logits_fn(x)``: logits (B, K) of normalised clips ``x`` (B, C, T, H, W), or of (B * V, ...) when
    the batch holds V views per video (their softmax scores are averaged per video); ``box``: a
    :class:`~vdgtool.methods.adversarial.PixelBox` of the model's input. Call :meth:`add_batch` per
    batch, under ``torch.no_grad()`` and the caller's autocast; :meth:`ranking` gives the worst first.
    """

    def __init__(self, candidates: Sequence[Candidate], logits_fn: Callable[[torch.Tensor], torch.Tensor], box):
        self.candidates = [IDENTITY_CANDIDATE] + [c for c in candidates if not c.is_identity]
        self.logits_fn = logits_fn
        self.box = box
        self.fitness = [Fitness() for _ in self.candidates]

    @torch.no_grad()
    def add_batch(self, x: torch.Tensor, y: torch.Tensor, views: int = 1) -> None:
        """Score every candidate on normalised clips ``x`` with labels ``y`` (one per video); rows with
        label -1 are ignored."""
        keep = y >= 0
        if not bool(keep.any()):
            return
        x01 = self.box.to_pixels(x.float())
        for cand, fit in zip(self.candidates, self.fitness):
            xt = x if cand.is_identity else self.box.from_pixels(cand.apply(x01)).to(x.dtype)
            logits = self.logits_fn(xt).float()
            probs = logits.softmax(-1)
            if views > 1:
                probs = probs.view(-1, views, probs.shape[-1]).mean(1)
            p, t = probs[keep], y[keep]
            wrong = (p.argmax(-1) != t).sum().item()
            ce = F.nll_loss(p.clamp_min(1e-12).log(), t, reduction="sum").item()
            fit.add(Fitness(float(wrong), float(ce), int(t.numel())))

    def merge(self, parts: Sequence[Sequence[Fitness]]) -> None:
        """Add the fitness lists of other ranks (same candidates, their shards of the clips)."""
        for part in parts:
            for mine, theirs in zip(self.fitness, part):
                mine.add(theirs)

    def ranking(self) -> list[int]:
        """Candidate positions (identity excluded), worst first: higher error, then larger mean CE, then the
        earlier candidate."""
        order = range(1, len(self.candidates))
        return sorted(order, key=lambda i: (-_finite(self.fitness[i].error), -_finite(self.fitness[i].mean_ce), i))


def stratified_indices(labels, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` positions of ``labels`` (ignoring -1), class-stratified: a seeded permutation per class,
    taken round-robin over the classes (so every class gets n / K when it has that many); sorted."""
    labels = np.asarray(labels, dtype=np.int64)
    classes = np.unique(labels[labels >= 0])
    queues = [np.flatnonzero(labels == c)[rng.permutation(int((labels == c).sum()))] for c in classes]
    out: list[int] = []
    depth = 0
    while len(out) < n and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(out) < n:
                out.append(int(q[depth]))
        depth += 1
    return np.sort(np.asarray(out, dtype=np.int64))


def _finite(v: float) -> float:
    return v if v == v and math.isfinite(v) else -math.inf


__all__ = ["Candidate", "CandidateScorer", "Fitness", "GridPoint", "IDENTITY_CANDIDATE", "draw_candidates",
           "magnitude", "ops_grid", "random_candidates", "stratified_indices"]
