"""Worst-case augmentation search (``augsearch``, Ani-GIFs; Volpi & Murino, ICCV 2019) and its random
control (``rda``), as training methods.

``augsearch``: T starts as {identity}. After ``warmup`` epochs, and then every ``search_every``
epochs until |T| = ``max_T``, ``candidates`` transformations (compositions of ``compose`` (op, level)
points of the ``ops`` set, not yet in T) are scored on a fixed, class-stratified search set of
``search_set`` training clips in test-mode views (or on the current batch with ``search_set=batch``):
top-1 error in eval mode, no gradients, ties broken by the larger mean cross-entropy. The worst one
joins T (one ``augsearch`` event in results.jsonl per search: op, level, value, magnitude, its error,
the identity's error on the same clips, |T|). Each training clip draws one member of T (uniformly,
identity included; or the identity with probability ``p_identity``) and is transformed with the same
parameters on every frame, after crop / flip / jitter and before normalisation; ``mode=mix`` trains on
the transformed clip, ``mode=pair`` on the mean of the clean and transformed clips' losses (twice the
cost). T is method state: in every checkpoint, restored by ``--resume``, and in the ``done`` summary.

``rda``: the same grid and schedule, but each clip draws a fresh random (op, level) composition; the
share of clean clips follows augsearch's |T| (1 / (searches due + 1)) unless ``p_identity`` is given,
so the two differ only in *which* transformations are trained on.

Both are ERM otherwise (label smoothing, pseudo-label weights, the optional ``--hp da=...`` term).
Validation and test clips are never transformed.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from vdgtool.augment.search import (IDENTITY_CANDIDATE, Candidate, CandidateScorer, Fitness, draw_candidates,
                                    ops_grid, random_candidates, stratified_indices)
from vdgtool.augment.sets import apply_batch
from vdgtool.errors import ConfigError
from vdgtool.methods.adversarial import PixelBox
from vdgtool.methods.base import HParam, register_method
from vdgtool.methods.da import DA_HPARAMS
from vdgtool.methods.erm import ERM
from vdgtool.utils.log import get_logger
from vdgtool.utils.seed import derive_seed

log = get_logger("augsearch")

SCHEDULE_HPARAMS = {
    "ops": HParam("pil10", "transformation set: pil10 (Volpi & Murino), autoaugment, gif, or a union such as "
                           "pil10+quantize (docs/augment.md)"),
    "warmup": HParam(1.0, "training before the first search (T = {identity} until then); 0 searches at the "
                          "first step (a fine-tune from a trained model)", min=0.0, unit="epochs"),
    "search_every": HParam(1.0, "training between two searches (Volpi: 10 000 iterations)", min=0.0, unit="epochs"),
    "max_T": HParam(11, "size of T, identity included; searching stops when T is full", min=1),
    "compose": HParam(1, "grid points per transformation (the seed: 1; Volpi: 3)", min=1, max=4),
    "p_identity": HParam(-1.0, "share of clean clips; -1: the identity is one member of T, drawn uniformly "
                               "(Volpi); p in [0, 1]: clean with probability p, else a transformed member",
                         min=-1.0, max=1.0),
    "mode": HParam("mix", "mix: CE on the transformed clip; pair: (CE(x) + CE(t(x))) / 2, twice the cost",
                   choices=("mix", "pair")),
}


class _Augmented(ERM):
    """ERM on clips transformed by a per-clip draw; subclasses say what is drawn."""

    HPARAMS = {"label_smoothing": ERM.HPARAMS["label_smoothing"], **SCHEDULE_HPARAMS, **DA_HPARAMS}

    def __init__(self, networks, num_classes, hparams, **kw):
        super().__init__(networks, num_classes, hparams, **kw)
        if not float(self.hp["search_every"]) > 0:
            raise ConfigError(f"search_every={self.hp['search_every']} must be positive",
                              "pass --hp search_every=<epochs > 0> (e.g. 1)")
        p = float(self.hp["p_identity"])
        if p != -1.0 and not 0.0 <= p <= 1.0:
            raise ConfigError(f"p_identity={p} is neither -1 (uniform over T) nor a probability",
                              "pass --hp p_identity=-1 or a value in [0, 1]")
        self.points = ops_grid(str(self.hp["ops"]))
        self.seed = 0
        self.rank = 0
        self._box: PixelBox | None = None

    # -- schedule ----------------------------------------------------------------------------------
    def schedule_steps(self) -> tuple[int, int]:
        """(warm-up steps, steps between searches) at the current steps per epoch."""
        spe = max(1, int(self.progress.steps_per_epoch))
        return max(0, round(float(self.hp["warmup"]) * spe)), max(1, round(float(self.hp["search_every"]) * spe))

    def searches_due(self, global_step: int) -> int:
        """How many searches the schedule holds by ``global_step`` (at most max_T - 1)."""
        warm, every = self.schedule_steps()
        if global_step < warm:
            return 0
        return min(int(self.hp["max_T"]) - 1, (global_step - warm) // every + 1)

    # -- the engine's hooks ------------------------------------------------------------------------
    def setup(self, ctx) -> None:
        super().setup(ctx)
        spec = self.net().input_spec
        if getattr(spec, "modality", "rgb") != "rgb" or len(spec.mean) != 3:
            raise ConfigError(f"method {self.name} transforms RGB clips, but the model reads "
                              f"{getattr(spec, 'modality', '?')} input", "train augsearch / rda on an RGB model")
        self.seed, self.rank = int(ctx.cfg.seed), int(ctx.rank)

    def box(self, device) -> PixelBox:
        if self._box is None or self._box.mean.device != torch.device(device):
            self._box = PixelBox(self.net().input_spec, device)
        return self._box

    def draw(self, n: int, rng: np.random.Generator) -> list[Candidate]:  # pragma: no cover
        raise NotImplementedError

    def transform(self, x: torch.Tensor, cands: list[Candidate]) -> torch.Tensor:
        """Normalised clips ``x`` with clip i transformed by ``cands[i]`` (the identity leaves it exact)."""
        if all(c.is_identity for c in cands):
            return x
        box = self.box(x.device)
        out = apply_batch(box.to_pixels(x.float()), [c.ops() or None for c in cands])
        return box.from_pixels(out).to(x.dtype)

    def before_step(self, batches) -> None:
        """Called at the start of every training step (augsearch searches here)."""

    def training_step(self, batches, stepper):
        self.before_step(batches)
        src = batches["source"]
        x = src["video"]
        rng = np.random.default_rng(derive_seed(self.seed, self.name, "draw", self.progress.global_step, self.rank))
        cands = self.draw(x.shape[0], rng)
        xt = self.transform(x, cands)
        if self.hp["mode"] == "pair":
            new = {**src, "video": torch.cat([x, xt]), "label": torch.cat([src["label"], src["label"]])}
            if src.get("weight") is not None:
                new["weight"] = torch.cat([src["weight"], src["weight"]])
        else:
            new = {**src, "video": xt}
        metrics = super().training_step({**batches, "source": new}, stepper)
        metrics["augmented"] = float(np.mean([not c.is_identity for c in cands]))
        return metrics


@register_method("augsearch")
class AugSearch(_Augmented):
    description = ("Worst-case augmentation search (Ani-GIFs / Volpi & Murino): T = {identity}; every "
                   "search_every epochs the (op, level) with the highest error on a fixed search set joins T; "
                   "each clip trains on one member of T (same parameters on every frame). T is method state.")
    HPARAMS = {**_Augmented.HPARAMS,
               "candidates": HParam(64, "transformations scored per search (uniform over the grid, without "
                                        "replacement, members of T excluded; Volpi: 100)", min=1),
               "search_set": HParam("256", "clips scored per search: N = a fixed class-stratified set of N "
                                           "training clips in test-mode views, or 'batch' (the current "
                                           "training batch, the seed's wording)")}

    def __init__(self, networks, num_classes, hparams, **kw):
        super().__init__(networks, num_classes, hparams, **kw)
        s = str(self.hp["search_set"]).strip()
        if s != "batch" and not (s.isdigit() and int(s) >= 1):
            raise ConfigError(f"search_set={s!r} is neither 'batch' nor a number of clips",
                              "pass --hp search_set=256 (a fixed set of N clips) or --hp search_set=batch")
        self.search_n = None if s == "batch" else int(s)
        self.T: list[Candidate] = [IDENTITY_CANDIDATE]
        self.searches = 0
        self.events: list[dict] = []
        self._search_ds = None
        self._search_idx = np.zeros(0, np.int64)

    def setup(self, ctx) -> None:
        super().setup(ctx)
        if self.search_n is None:
            return
        # the fixed search set: labelled source clips of the training stream, in test-mode views
        ds = ctx.build_dataset(ctx.cfg.data, train=False)
        train = ctx.train_dataset
        pseudo = np.asarray(getattr(train, "pseudo", np.zeros(len(train), bool)), dtype=bool)
        keys = {str(k) for k, p in zip(train.keys.tolist(), pseudo.tolist()) if not p}
        labels = np.where(np.isin(ds.keys.astype(str), list(keys)), ds.labels, -1)
        rng = np.random.default_rng(derive_seed(self.seed, "augsearch", "search-set"))
        self._search_idx = stratified_indices(labels, self.search_n, rng)
        self._search_ds = ds
        if len(self._search_idx) < self.search_n:
            log.info("augsearch: the search set holds all %d labelled training clips (search_set=%d)",
                     len(self._search_idx), self.search_n)

    def before_step(self, batches) -> None:
        if self.searches < self.searches_due(self.progress.global_step) and len(self.T) < int(self.hp["max_T"]):
            self.search(batches)

    def draw(self, n, rng):
        p = float(self.hp["p_identity"])
        if p < 0 or len(self.T) == 1:
            return [self.T[int(i)] for i in rng.integers(0, len(self.T), size=n)]
        clean = rng.random(n) < p
        picks = rng.integers(1, len(self.T), size=n)
        return [IDENTITY_CANDIDATE if c else self.T[int(i)] for c, i in zip(clean, picks)]

    # -- the search --------------------------------------------------------------------------------
    def _score(self, scorer: CandidateScorer, batches) -> None:
        ctx = self.ctx
        if self.search_n is None:
            src = batches["source"]
            scorer.add_batch(src["video"], src["label"])
            return
        from vdgtool.runtime import make_loader

        shard = self._search_idx[ctx.rank::ctx.world] if ctx is not None else self._search_idx
        sub = torch.utils.data.Subset(self._search_ds, shard.tolist())
        device = next(self.net().parameters()).device
        for b in make_loader(sub, int(ctx.cfg.batch_size), int(ctx.cfg.workers), device=device):
            scorer.add_batch(b["video"].to(device, non_blocking=True), torch.as_tensor(b["label"]).to(device))

    def search(self, batches) -> dict | None:
        """One search: score fresh candidates, add the worst to T, log the event; returns it."""
        import time

        t0 = time.perf_counter()
        k = self.searches
        rng = np.random.default_rng(derive_seed(self.seed, "augsearch", "candidates", k))
        cands = draw_candidates(self.points, int(self.hp["candidates"]), int(self.hp["compose"]), rng, exclude=self.T)
        self.searches += 1
        if not cands:
            log.warning("augsearch: every transformation of the grid is in T already; search %d skipped", k + 1)
            return None
        net = self.net()
        device = next(net.parameters()).device
        was = net.training
        net.eval()
        scorer = CandidateScorer(cands, net, self.box(device))
        ctx = self.ctx
        try:
            with torch.no_grad(), (ctx.autocast() if ctx is not None else contextlib.nullcontext()):
                self._score(scorer, batches)
        finally:
            if ctx is not None:
                ctx.restore_train_mode()
            else:
                net.train(was)
        if ctx is not None and ctx.world > 1:
            from vdgtool.runtime import all_gather_objects

            mine = [(f.errors, f.ce, f.n) for f in scorer.fitness]
            parts = [p for r, p in enumerate(all_gather_objects(mine, ctx.world)) if r != ctx.rank]
            scorer.merge([[Fitness(*t) for t in p] for p in parts])
        worst = scorer.ranking()[0]
        cand, fit, ident = scorer.candidates[worst], scorer.fitness[worst], scorer.fitness[0]
        self.T.append(cand)
        event = {"search": k + 1, **cand.describe(), "fitness_err": fit.error, "fitness_ce": fit.mean_ce,
                 "identity_err": ident.error, "identity_ce": ident.mean_ce, "T_size": len(self.T),
                 "candidates": len(cands), "clips": fit.n, "global_step": int(self.progress.global_step),
                 "seconds": round(time.perf_counter() - t0, 3)}
        self.events.append(event)
        self.log_event("augsearch", **event)
        log.info("augsearch: search %d at step %d: %s (level %s) error %.3f vs identity %.3f; |T| = %d", k + 1,
                 self.progress.global_step, cand.name, event["level"], fit.error, ident.error, len(self.T))
        return event

    def epoch_metrics(self):
        return {"T_size": len(self.T), "T": [c.name for c in self.T[1:]]}

    def get_state(self):
        return {"T": [c.to_state() for c in self.T[1:]], "searches": int(self.searches), "events": list(self.events)}

    def set_state(self, state):
        self.T = [IDENTITY_CANDIDATE] + [Candidate.from_state(c) for c in state.get("T", [])]
        self.searches = int(state.get("searches", len(self.T) - 1))
        self.events = [dict(e) for e in state.get("events", [])]


@register_method("rda")
class RDA(_Augmented):
    description = ("Random data augmentation, the control of augsearch: the same (op, level) grid and schedule, "
                   "a fresh random transformation per clip (clean share 1/(searches due + 1), as augsearch's |T|).")

    def draw(self, n, rng):
        k = self.searches_due(self.progress.global_step)
        if k == 0:
            return [IDENTITY_CANDIDATE] * n
        p = float(self.hp["p_identity"])
        p = 1.0 / (k + 1) if p < 0 else p
        clean = rng.random(n) < p
        rand = random_candidates(self.points, n, int(self.hp["compose"]), rng)
        return [IDENTITY_CANDIDATE if c else r for c, r in zip(clean, rand)]

    def epoch_metrics(self):
        return {"slots": self.searches_due(self.progress.global_step)}


__all__ = ["AugSearch", "RDA", "SCHEDULE_HPARAMS"]
