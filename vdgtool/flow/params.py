"""TV-L1 solver parameters, importable without torch (so `vdgtool flow --help` stays fast)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from vdgtool.errors import InputError

PRESMOOTHING_SIGMA = 0.8


@dataclass(frozen=True)
class TVL1Params:
    """Parameters of the TV-L1 solver (defaults and how they were chosen: docs/flow.md).

    The defaults give 3.37 px mean end-point error on the 6 FlyingChairs sample pairs (OpenCV
    DualTVL1 with zoom 0.5: 3.54 px; with its default zoom 0.8: 6.4 px): a deep pyramid (zoom 0.5)
    matters far more for large motion than more iterations.
    """

    tau: float = 0.25              # time step of the primal-dual scheme (<= 0.25 for convergence)
    lambda_: float = 0.10          # data-term weight (smaller = smoother flow)
    theta: float = 0.3             # coupling between u and the auxiliary variable v
    scales: int = 5                # pyramid levels (capped so the coarsest level is >= 16 px)
    zoom: float = 0.5              # downsampling factor between pyramid levels
    warps: int = 5                 # warps (re-linearisations) per level
    epsilon: float = 0.01          # stop when mean squared flow update < epsilon**2
    iterations: int = 30           # max iterations per warp (per outer round)
    outer_iterations: int = 1      # rounds of (median filter, iterations) per warp, as OpenCV's
    median: int = 5                # median filter size applied before each round (0/1 = off)
    presmooth: float = PRESMOOTHING_SIGMA  # Gaussian sigma applied to both frames (0 = off)

    def validate(self) -> "TVL1Params":
        if not 0 < self.tau <= 0.25:
            raise InputError(f"TV-L1 tau={self.tau} is outside (0, 0.25]", "use a time step tau <= 0.25")
        if self.lambda_ <= 0 or self.theta <= 0:
            raise InputError(f"TV-L1 lambda={self.lambda_} and theta={self.theta} must be > 0",
                             "pass positive --lambda / --theta")
        if not 0 < self.zoom < 1:
            raise InputError(f"TV-L1 zoom={self.zoom} is outside (0, 1)", "use e.g. --zoom 0.5")
        if self.scales < 1 or self.warps < 1 or self.iterations < 1 or self.outer_iterations < 1:
            raise InputError("TV-L1 scales, warps, iterations and outer iterations must be >= 1",
                             "pass positive counts")
        if self.median not in (0, 1) and (self.median < 0 or self.median % 2 == 0):
            raise InputError(f"TV-L1 median={self.median} must be 0 (off) or an odd size",
                             "use --median 0, 3 or 5")
        if self.epsilon < 0:
            raise InputError(f"TV-L1 epsilon={self.epsilon} is negative", "use e.g. --epsilon 0.01")
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lambda"] = d.pop("lambda_")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TVL1Params":
        d = dict(d)
        if "lambda" in d:
            d["lambda_"] = d.pop("lambda")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"unknown TV-L1 parameter(s) {', '.join(unknown)}",
                             f"use {', '.join(sorted(n.rstrip('_') for n in names))}")
        return cls(**d)
