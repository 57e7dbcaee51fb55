"""vdgtool train. Its options are generated from TrainConfig's fields (one source of truth)."""

from __future__ import annotations

import dataclasses
import json
import os

import click

from vdgtool.cli.common import at_file_callback, emit, json_option, overwrite_option, resume_option
from vdgtool.train.config import TrainConfig

_PAIRS = ("model_kwargs", "flow_model_kwargs", "hp")  # NAME=VALUE options


def _parse_kv(pairs, what):
    from vdgtool.errors import ConfigError

    out = {}
    for p in pairs:
        if "=" not in p:
            raise ConfigError(f"{what} '{p}' is not NAME=VALUE", f"write e.g. {what} lam=0.5")
        k, v = p.split("=", 1)
        if not k.strip():
            raise ConfigError(f"{what} '{p}' has no name", f"write e.g. {what} lam=0.5")
        out[k.strip().replace("-", "_")] = _auto(v.strip())
    return out


def _auto(v: str):
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    return v


def _milestones(value):
    from vdgtool.errors import ConfigError

    try:
        return [int(m) for m in value.split(",") if m.strip()]
    except ValueError:
        raise ConfigError(f"--milestones {value!r} is not a comma-separated list of epochs", "e.g. --milestones 20,40") \
            from None


def _click_type(f: dataclasses.Field):
    m, t = f.metadata, str(f.type)
    if m.get("choices"):
        return click.Choice([str(c) for c in m["choices"]])
    if f.name == "milestones":
        return str
    if t.startswith("int") or t.startswith("list[int"):
        return click.IntRange(min=m.get("min"), max=m.get("max"), min_open=m.get("min_open", False))
    if t.startswith("float"):
        return click.FloatRange(min=m.get("min"), max=m.get("max"), min_open=m.get("min_open", False))
    if m.get("path"):
        return click.Path()
    return str


def config_options(f):
    """One click option per TrainConfig field (help, choices and ranges from the field metadata)."""
    fields = [x for x in dataclasses.fields(TrainConfig) if not x.metadata.get("hidden")]
    for fld in reversed(fields):
        m, t = fld.metadata, str(fld.type)
        decls = (m.get("cli") or f"--{fld.name.replace('_', '-')}").split("/")
        help_ = m.get("help", "")
        if t.startswith("bool"):
            flag = m.get("flag")
            if flag:  # e.g. --no-flip stores False
                f = click.option(flag, fld.name, flag_value=not fld.default, default=None, help=help_)(f)
            else:
                f = click.option(*decls, fld.name, is_flag=True, default=None, help=help_)(f)
        elif t.startswith("list") and fld.name != "milestones" or fld.name in _PAIRS:
            extra = {"callback": at_file_callback} if m.get("path") else {}  # store lists also take @FILE
            f = click.option(*decls, fld.name, multiple=True, type=_click_type(fld) if fld.name not in _PAIRS else str,
                             help=help_ + (" @FILE: a list of paths." if extra else ""), **extra)(f)
        else:
            default = fld.default if fld.default is not dataclasses.MISSING else None
            show = f"  [default: {default}]" if default not in (None, "", dataclasses.MISSING) else ""
            f = click.option(*decls, fld.name, type=_click_type(fld), default=None, help=help_ + show)(f)
    return f


def _list_models(as_json):
    from vdgtool.models import list_models, model_info

    rows = []
    for n in list_models():
        try:
            info = model_info(n)
        except Exception as exc:  # a broken entry should not hide the others
            info = {"family": "?", "description": str(exc)}
        spec = info.get("input_spec", {}) or {}
        rows.append({"name": n, "family": info.get("family", ""), "frames": spec.get("num_frames"),
                     "size": spec.get("size"), "modality": spec.get("modality"),
                     "description": info.get("description", "")})
    emit(rows, as_json, [tuple(r.values()) for r in rows],
         headers=("model", "family", "frames", "size", "modality", "description"))


def _list_methods(as_json):
    import textwrap

    from vdgtool.methods import get_method, list_methods

    rows = []
    for n in list_methods():
        cls = get_method(n)
        rows.append({"name": n, "description": cls.description, "networks": dict(cls.NETWORKS),
                     "inputs": list(cls.INPUTS),
                     "hparams": {k: {"default": v.default, "help": v.help, "choices": v.choices, "min": v.min,
                                     "max": v.max, "unit": v.unit} for k, v in cls.HPARAMS.items()}})
    if as_json:
        emit(rows, True)
        return
    def show(v):  # what one would type after --hp NAME=
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, float):
            return f"{v:g}"
        return '""' if v == "" else str(v)

    for r in rows:  # one block per method, narrow enough for a terminal
        click.echo(r["name"])
        for line in textwrap.wrap(r["description"], 96):
            click.echo(f"  {line}")
        for k, h in r["hparams"].items():
            extra = f" (one of {', '.join(map(str, h['choices']))})" if h["choices"] else ""
            unit = f" [{h['unit']}]" if h["unit"] else ""
            click.echo(f"    --hp {k}={show(h['default'])}{unit}")
            for line in textwrap.wrap(h["help"] + extra, 88):
                click.echo(f"        {line}")
        click.echo("")


def resolve_config(ctx, kw: dict, config_file: str | None, resume: bool) -> TrainConfig:
    """Merge, lowest first: a resumed run's config.json, a --config file, the flags given explicitly."""
    from vdgtool.errors import ConfigError
    from vdgtool.train.config import load_config_file

    base: dict = {}
    out = kw.get("output")
    recorded = os.path.join(out, "config.json") if out else None
    if resume and recorded and os.path.exists(recorded):
        with open(recorded) as f:
            saved = json.load(f)
        names = {x.name for x in dataclasses.fields(TrainConfig)}
        base.update({k: v for k, v in saved.items() if k in names})
    if config_file:
        base.update(load_config_file(config_file))
    given = {}
    for name, val in kw.items():
        if val is None or (isinstance(val, tuple) and not val):
            continue
        if name == "milestones":
            val = _milestones(val)
        elif name in ("model_kwargs", "flow_model_kwargs"):
            val = {**base.get(name, {}), **_parse_kv(val, "--" + name.replace("_kwargs", "-arg").replace("_", "-"))}
        elif name == "hp":
            val = {**base.get(name, {}), **_parse_kv(val, "--hp")}
        elif isinstance(val, tuple):
            val = list(val)
        given[name] = val
    if resume and base and recorded and os.path.exists(recorded):
        # a flag that changes what the resumed run computes is refused here (the engine re-checks)
        from vdgtool.train.config import RECORDED_CHANGES, RESUMABLE_CHANGES

        probe = TrainConfig.from_dict({**base, **given}).resolve_paths().to_dict()
        saved_cfg = TrainConfig.from_dict(base).resolve_paths().to_dict()
        for k in given:
            if k not in RESUMABLE_CHANGES + RECORDED_CHANGES and probe.get(k) != saved_cfg.get(k):
                raise ConfigError(f"--resume with a changed option {k}: the run was started with {saved_cfg.get(k)!r}, "
                                  f"now {probe.get(k)!r}",
                                  "drop the option to continue the run as started, or pass --overwrite to start again")
    base.update(given)
    if not base.get("output"):
        raise ConfigError("no run directory given", "pass -o RUN_DIR")
    return TrainConfig.from_dict(base)


@click.command("train")
@config_options
@click.option("--config", "config_file", type=click.Path(), help="JSON/TOML file of options (flags override it).")
@click.option("--list-models", is_flag=True, help="List registered models and exit.")
@click.option("--list-methods", is_flag=True, help="List registered methods and their hyper-parameters and exit.")
@resume_option
@overwrite_option
@json_option
@click.pass_context
def train(ctx, list_models, list_methods, config_file, resume, overwrite, as_json, **kw):
    """Train a video model with a registered method; writes a run directory.

    RUN_DIR gets config.json, results.jsonl (epoch lines and method events), metrics.csv,
    checkpoints/{last,best}.pt (loadable with weights_only=True) and a `done` marker.
    Data streams: --data (labelled source), --target (unlabelled target; labels never read), --flow /
    --target-flow / --val-flow (flow stores paired by video key for RGB + flow methods), --pool +
    --pseudo (selected pseudo-labelled rows). Multi-GPU: `torchrun --nproc-per-node 4 -m vdgtool train ...`.
    SIGTERM/SIGUSR1 (SLURM pre-emption) checkpoint and stop; `vdgtool train --resume -o RUN` continues
    exactly, with the options the run was started with.

    \b
    Examples:
      vdgtool train --data real.h5 --val real_val.h5 --model r2plus1d_18 --method erm -o runs/erm
      vdgtool train --data real.h5 --target anim_pool.h5 --val real_val.h5 --method dann --hp lam=0.1 -o runs/dann
      vdgtool train --data clips.h5 --flow flow.h5 --val val.h5 --val-flow val_flow.h5 --method two-stream \\
        --model i3d --weights rgb_imagenet.pt --flow-weights flow_imagenet.pt -o runs/two_stream
      vdgtool train --list-methods
    """
    from vdgtool.train.engine import train as run

    if list_models:
        return _list_models(as_json)
    if list_methods:
        return _list_methods(as_json)
    cfg = resolve_config(ctx, kw, config_file, resume)
    summary = run(cfg, resume=resume, overwrite=overwrite)
    emit_train_summary(summary, as_json)


def emit_train_summary(summary: dict, as_json: bool, extra_rows=()) -> None:
    """The stdout report of a finished run (JSON, or a two-column table)."""
    if summary.get("rank", 0) != 0:
        return  # under torchrun only rank 0 reports
    final = summary.get("final", {})

    def r4(x):  # the table mixes text and numbers, so tabulate's floatfmt does not apply
        return round(x, 4) if isinstance(x, float) else x

    rows = [("run", summary["run_dir"]), ("model", summary["model"]), ("method", summary["method"]),
            ("epochs", summary["epochs"]), ("train loss", r4(final.get("train_loss"))),
            ("train acc", r4(final.get("train_acc")))]
    for name, m in (final.get("val") or {}).items():
        rows.append((f"val {name} top1", r4(m["top1"])))
        for sname, sm in (m.get("streams") or {}).items():
            rows.append((f"val {name} top1 ({sname})", r4(sm["top1"])))
    if summary.get("best_val_top1") is not None:
        rows.append(("best val top1 (best.pt)", r4(summary["best_val_top1"])))
    rows += list(extra_rows)
    emit(summary, as_json, rows)
