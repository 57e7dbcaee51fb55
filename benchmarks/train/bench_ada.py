"""Cost of adversarial data augmentation per training step, against ERM on the same model (same run).

    python benchmarks/train/bench_ada.py [--batch 8] [--reps 5] [--threads 1] [--device cpu]

For each (model, method) row: seconds per ``training_step`` (median of ``reps``, the methods interleaved
so that machine load hits them alike) as a ratio to ERM on the same model, and the share of the step
spent in the ascent loop (``method.attack``). (torch's FlopCounterMode cannot count FLOPs here: it does
not support ``autograd.grad`` on a leaf input, which the ascent needs.) The released APN code is said to cost about 15x plain training (spec §2.5).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time

import torch
from tabulate import tabulate

from vdgtool.methods import Stepper, get_method, parse_hparams
from vdgtool.models import create_model

ROWS = [
    ("test_apn", "erm", {}),
    ("test_apn", "apn-ada", {}),  # paper: levels II,III, 3 theta-steps, reference once, eval-mode attack
    ("test_apn", "apn-ada", {"update": "joint", "reference": "per_step", "attack_mode": "train",
                             "resample_subsets": True}),  # the released code's loop
    ("test_apn", "apn-ada", {"levels": "III"}),
    ("test_apn", "apn-ada", {"attack": "random"}),
    ("test_trn", "erm", {}),
    ("test_trn", "ada", {}),
]


class _Timed:
    """Wraps ``method.attack`` to accumulate its wall time."""

    def __init__(self, method, device):
        self.inner, self.device, self.seconds = method.attack, device, 0.0

    def __call__(self, *a, **kw):
        _sync(self.device)
        t = time.perf_counter()
        out = self.inner(*a, **kw)
        _sync(self.device)
        self.seconds += time.perf_counter() - t
        return out


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def build(model, method, hp, batch, device):
    torch.manual_seed(0)
    kw = {"frame_dropout": 0.5} if model == "test_apn" else {"num_frames": 5}
    net = create_model(model, num_classes=4, **kw).to(device).train()
    cls = get_method(method)
    m = cls(net, 4, parse_hparams(cls, hp)).to(device)
    m.model.train()
    st = Stepper({"model": torch.optim.SGD(m.model.parameters(), lr=1e-3)}, None, None, contextlib.nullcontext)
    x = torch.randn(batch, 3, 5, net.input_spec.size, net.input_spec.size, device=device)
    y = torch.randint(0, 4, (batch,), device=device)
    timer = None
    if hasattr(m, "attack"):
        timer = m.attack = _Timed(m, device)
    return {"method": m, "stepper": st, "batch": {"source": {"video": x, "label": y}}, "timer": timer,
            "times": [], "attack": []}


def step(r, device):
    if r["timer"]:
        r["timer"].seconds = 0.0
    _sync(device)
    t = time.perf_counter()
    r["method"].training_step(r["batch"], r["stepper"])
    _sync(device)
    r["times"].append(time.perf_counter() - t)
    r["attack"].append(r["timer"].seconds if r["timer"] else 0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    runs = [build(mo, me, hp, a.batch, a.device) for mo, me, hp in ROWS]
    for r in runs:
        step(r, a.device)  # warm-up
        r["times"].clear()
        r["attack"].clear()
    for _ in range(a.reps):
        for r in runs:
            step(r, a.device)
    med = [sorted(r["times"])[len(r["times"]) // 2] for r in runs]
    base = {mo: i for i, (mo, me, _) in enumerate(ROWS) if me == "erm"}
    rows = []
    for i, (mo, me, hp) in enumerate(ROWS):
        b = base[mo]
        share = sum(runs[i]["attack"]) / max(sum(runs[i]["times"]), 1e-12)
        rows.append({"model": mo, "method": me, "hp": ",".join(f"{k}={v}" for k, v in hp.items()) or "-",
                     "s/step": med[i], "time vs erm": med[i] / med[b], "ascent share": f"{share:.0%}" if me != "erm" else "-"})
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, device {a.device}, "
          f"{a.threads} threads, batch {a.batch}, median of {a.reps} interleaved steps")
    print(tabulate(rows, headers="keys", floatfmt=".3g"))


if __name__ == "__main__":
    main()
