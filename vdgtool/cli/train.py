"""vdgtool train."""

from __future__ import annotations

import click

from vdgtool.cli.common import device_option, emit, json_option, overwrite_option, resume_option

# CLI flag -> TrainConfig field, for merging with --config (flags given explicitly win)
_FIELDS = ("data", "val", "output", "train_domains", "classes_file", "model", "pretrained", "weights", "init",
           "freeze_backbone", "freeze_bn", "linear_probe", "method", "epochs", "batch_size", "lr", "optimizer",
           "momentum", "weight_decay", "schedule", "warmup_epochs", "milestones", "gamma", "clip_grad",
           "num_frames", "size", "frame_interval", "scale_min", "flip", "color_jitter", "val_clips", "workers",
           "seed", "device", "amp", "max_steps_per_epoch", "save_every")


def _parse_kv(pairs, what):
    from vdgtool.errors import ConfigError

    out = {}
    for p in pairs:
        if "=" not in p:
            raise ConfigError(f"{what} '{p}' is not NAME=VALUE", f"write e.g. {what} lam=0.5")
        k, v = p.split("=", 1)
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
    from vdgtool.methods import get_method, list_methods

    rows = []
    for n in list_methods():
        cls = get_method(n)
        rows.append({"name": n, "description": cls.description,
                     "hparams": {k: v.default for k, v in cls.HPARAMS.items()}})
    emit(rows, as_json, [(r["name"], r["description"], ", ".join(f"{k}={v}" for k, v in r["hparams"].items()))
                         for r in rows], headers=("method", "description", "hyper-parameters (--hp NAME=VALUE)"))


@click.command("train")
@click.option("--data", multiple=True, type=click.Path(), help="Training clip store (repeatable; classes aligned by name).")
@click.option("--val", multiple=True, type=click.Path(),
              help="Validation store (repeatable). The first is the source validation set used to pick best.pt.")
@click.option("-o", "--output", type=click.Path(), help="Run directory.")
@click.option("--model", default=None, help="Model name (see --list-models); default test_c3d.")
@click.option("--model-arg", multiple=True, help="Model keyword NAME=VALUE, e.g. backbone=resnet50 (repeatable).")
@click.option("--method", default=None, help="Training method (see --list-methods); default erm.")
@click.option("--hp", multiple=True, help="Method hyper-parameter NAME=VALUE (repeatable), e.g. --hp lam=0.5.")
@click.option("--config", "config_file", type=click.Path(), help="JSON/TOML file of options (flags override it).")
@click.option("--domain", "train_domains", multiple=True, help="Train only on videos of this domain (repeatable).")
@click.option("--classes", "classes_file", type=click.Path(), help="Class list file fixing the label space.")
@click.option("--pretrained", is_flag=True, default=None, help="Start from the model's published weights (internet).")
@click.option("--weights", type=click.Path(), help="Local weights file for the model (loaded weights_only).")
@click.option("--init", type=click.Path(), help="Fine-tune from this checkpoint (classifier kept if classes match).")
@click.option("--freeze-backbone", is_flag=True, default=None, help="Train only the classifier (and method heads).")
@click.option("--freeze-bn", is_flag=True, default=None, help="Keep BatchNorm statistics and affine parameters fixed.")
@click.option("--linear-probe", is_flag=True, default=None,
              help="Linear probe: frozen backbone and BN, re-initialised classifier.")
@click.option("--epochs", type=int)
@click.option("--batch-size", type=int)
@click.option("--lr", type=float)
@click.option("--optimizer", type=click.Choice(["sgd", "adamw", "adam"]))
@click.option("--momentum", type=float)
@click.option("--weight-decay", type=float)
@click.option("--schedule", type=click.Choice(["cosine", "step", "constant"]))
@click.option("--warmup-epochs", type=float)
@click.option("--milestones", type=str, help="Epochs where the step schedule multiplies lr by --gamma, e.g. 20,40.")
@click.option("--gamma", type=float)
@click.option("--clip-grad", type=float, help="Clip the gradient norm to this value.")
@click.option("--num-frames", type=int, help="Override the model's clip length / number of segments.")
@click.option("--size", type=int, help="Override the model's crop size.")
@click.option("--frame-interval", type=int, help="Override the dense sampler's frame interval.")
@click.option("--scale-min", type=float, help="Lower bound of the random-resized-crop scale.")
@click.option("--no-flip", "flip", flag_value=False, default=None, help="No horizontal flips.")
@click.option("--color-jitter", type=float)
@click.option("--val-clips", type=int, help="Test clips per validation video.")
@click.option("--workers", "-j", type=int, help="DataLoader worker processes.")
@click.option("--amp", type=click.Choice(["auto", "off", "bf16", "fp16"]), help="Mixed precision on CUDA.")
@click.option("--max-steps-per-epoch", type=int, help="Cap steps per epoch (quick experiments).")
@click.option("--save-every", type=int, help="Also keep a checkpoint every N epochs.")
@click.option("--list-models", is_flag=True, help="List registered models and exit.")
@click.option("--list-methods", is_flag=True, help="List registered methods and their hyper-parameters and exit.")
@device_option
@resume_option
@overwrite_option
@click.option("--seed", type=int, default=None, help="Random seed (recorded in the run).  [default: 0]")
@json_option
@click.pass_context
def train(ctx, list_models, list_methods, config_file, model_arg, hp, milestones, resume, overwrite, as_json,
          **kw):
    """Train a video model with a registered method; writes a run directory.

    RUN_DIR gets config.json, results.jsonl, metrics.csv, checkpoints/{last,best}.pt (loadable with
    weights_only=True) and a `done` marker. Multi-GPU: `torchrun --nproc-per-node 4 -m vdgtool train ...`.
    SIGTERM/SIGUSR1 (SLURM pre-emption) checkpoint and stop; `--resume` continues exactly.

    \b
    Examples:
      vdgtool train --data real.h5 --val real_val.h5 --model r2plus1d_18 --method erm -o runs/erm
      vdgtool train --data k400.h5 --model i3d --init base.pt --method drl-freeze --hp lam=0.5 -o runs/drl
      vdgtool train --list-models
    """
    from vdgtool.train.config import TrainConfig, load_config_file
    from vdgtool.train.engine import train as run

    if list_models:
        return _list_models(as_json)
    if list_methods:
        return _list_methods(as_json)
    base = load_config_file(config_file) if config_file else {}
    src = ctx.get_parameter_source
    for name in _FIELDS:
        if name in ("milestones",):
            continue
        val = kw.get(name)
        if isinstance(val, tuple):
            if val:
                base[name] = list(val)
            continue
        if val is not None and (src(name) is None or src(name).name != "DEFAULT" or name not in base):
            base[name] = val
    if milestones:
        base["milestones"] = [int(m) for m in milestones.split(",") if m]
    if model_arg:
        base["model_kwargs"] = {**base.get("model_kwargs", {}), **_parse_kv(model_arg, "--model-arg")}
    if hp:
        base["hp"] = {**base.get("hp", {}), **_parse_kv(hp, "--hp")}
    if not base.get("output"):
        from vdgtool.errors import ConfigError

        raise ConfigError("no run directory given", "pass -o RUN_DIR")
    cfg = TrainConfig.from_dict(base)
    summary = run(cfg, resume=resume, overwrite=overwrite)
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
    if summary.get("best_val_top1") is not None:
        rows.append(("best val top1 (best.pt)", r4(summary["best_val_top1"])))
    emit(summary, as_json, rows)
