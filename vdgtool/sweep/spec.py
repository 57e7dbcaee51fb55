"""Sweep specifications: named arms × a grid × random samples × seeds over any ``vdgtool train`` option.

A spec is a TOML (or JSON) file::

    seeds = [0, 1, 2]                      # or a count: seeds = 3  (0, 1, 2)
    run_name = "seed{seed}/{arm}"          # optional: run directories by template (default: option hash)

    [train]                                # options of every run, by their long name (see train --help)
    data = "data/seed{seed}/train.h5"      # {name} = the run's value of an option (or {arm}, {sweep_dir})
    val = ["real_val.h5", "animated_val.h5"]
    model = "test_c3d"
    epochs = 30
    no-flip = true                         # a flag: true passes it
    hp = {student = "test_frame2d"}        # NAME=VALUE options (--hp, --model-arg) as tables

    [[arms]]                               # named variants, each a table of options
    name = "erm"
    method = "erm"
    [[arms]]
    name = "drl-freeze"
    method = "drl-freeze"

    [grid]                                 # every combination
    lr = [0.001, 0.0005]
    "hp.lam" = [0.5, 1.0]

    random_samples = 4                     # random search: this many samples ...
    random_seed = 0                        # ... drawn with this seed, the same for every arm
    [random]
    weight-decay = {log_uniform = [1e-5, 1e-2]}
    "hp.eps" = {uniform = [0.0, 0.1]}      # also {choice = [...]}, {int = [lo, hi]}

    [local]                                # launcher settings (the command line overrides them)
    jobs = 2
    [slurm]
    partition = "gpu"
    time = "24:00:00"
    gpus = 1
    cpus = 10
    array_parallelism = 32
    requeue = true

Points are arms × grid × samples × seeds; later layers override earlier ones (train < arm < grid <
random < seed). Keys are checked against the click parameters of ``vdgtool train`` when the sweep
runs, so new train options work without changing this module, and each point's command line is
parsed by click before anything is launched.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import random
import re
from dataclasses import dataclass, field
from typing import Any

import click

from vdgtool.errors import ConfigError, InputError

TOP_KEYS = ("seeds", "run_name", "train", "arms", "grid", "random", "random_samples", "random_seed", "launcher",
            "local", "slurm")
#: train parameters a sweep owns or that make no sense in one
RESERVED = ("output", "resume", "overwrite", "list_models", "list_methods", "as_json", "help")
DISTRIBUTIONS = ("uniform", "log_uniform", "choice", "int")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w.\-]*)\}")


def train_command() -> click.Command:
    """The click command object of ``vdgtool train`` (its options are the sweep's vocabulary)."""
    from vdgtool.cli.train import train

    return train


@dataclass
class Opt:
    """One train option as the sweep sees it."""

    key: str                  # canonical spec key: the first long flag without '--' (batch-size, no-flip, hp)
    param: click.Option
    flag: str                 # the flag written on the command line

    @property
    def is_flag(self) -> bool:
        return bool(self.param.is_flag) and not self.param.count

    @property
    def multiple(self) -> bool:
        return bool(self.param.multiple)


def option_table(cmd: click.Command | None = None) -> dict[str, tuple[Opt, bool]]:
    """spelling -> (option, invert): every long flag and the parameter name (dashes or underscores).

    ``invert`` is True when a spelling means the opposite of the canonical flag (``flip = false`` for
    ``--no-flip``).
    """
    cmd = cmd or train_command()
    table: dict[str, tuple[Opt, bool]] = {}
    for p in cmd.params:
        if not isinstance(p, click.Option) or p.name in RESERVED or p.hidden:
            continue
        longs = [o for o in p.opts if o.startswith("--")]
        if not longs:
            continue
        o = Opt(longs[0][2:], p, longs[0])
        for s in longs:
            table[s[2:]] = (o, False)
        for s in p.secondary_opts:
            if s.startswith("--"):
                table[s[2:]] = (o, True)
        for s in (p.name, p.name.replace("_", "-")):
            # `flip = false` for `--no-flip` (flag_value False): the parameter name means the opposite flag
            inv = o.is_flag and p.flag_value is False
            table.setdefault(s, (o, inv))
    return table


def _fail_key(key: str, table: dict, where: str):
    import difflib

    near = difflib.get_close_matches(key, list(table), n=3)
    hint = f"did you mean {', '.join(near)}?" if near else "see `vdgtool train --help` for the options"
    reserved = {"output", "o", "resume", "overwrite", "json"}
    if key in reserved:
        raise ConfigError(f"{where}: '{key}' is set by the sweep itself", "remove it from the spec")
    raise ConfigError(f"{where}: '{key}' is not an option of vdgtool train", hint)


def _normalize(key: str, value: Any, table: dict, where: str) -> tuple[str, Any, str | None]:
    """(canonical key, value, dict entry or None) for one spec entry ``key = value``."""
    sub = None
    base = key
    if key not in table and "." in key:
        base, sub = key.split(".", 1)
    if base not in table:
        _fail_key(key, table, where)
    opt, invert = table[base]
    if sub is not None and not opt.multiple:
        raise ConfigError(f"{where}: '{key}': {opt.flag} takes one value, not NAME=VALUE entries",
                          f"write {opt.key} = VALUE")
    if opt.is_flag:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {opt.flag} is a flag: '{key}' must be true or false", f"write {key} = true")
        return opt.key, (not value) if invert else value, None
    if isinstance(value, dict) and not opt.multiple:
        raise ConfigError(f"{where}: '{key}' is a table, but {opt.flag} takes one value", "give a plain value")
    if isinstance(value, list) and not opt.multiple and (opt.param.nargs or 1) == 1:
        raise ConfigError(f"{where}: '{key}' is a list, but {opt.flag} takes one value",
                          "put alternatives under [grid], or give one value")
    return opt.key, value, sub


def _set(point: dict, key: str, value: Any, sub: str | None) -> None:
    if sub is not None:
        cur = point.get(key)
        point[key] = {**(cur if isinstance(cur, dict) else {}), sub: value}
    elif isinstance(value, dict) and isinstance(point.get(key), dict):
        point[key] = {**point[key], **value}  # NAME=VALUE tables merge: [train] hp + an arm's hp
    else:
        point[key] = value


def _is_distribution(v: Any) -> bool:
    return isinstance(v, dict) and len(v) == 1 and next(iter(v)) in DISTRIBUTIONS


def _flatten_tables(d: dict, leaf) -> list[tuple[str, Any]]:
    """[grid]/[random] entries: TOML dotted keys (hp.lam = [...]) arrive as nested tables -> 'hp.lam'."""
    out = []
    for k, v in d.items():
        if isinstance(v, dict) and not leaf(v):
            out += [(f"{k}.{kk}", vv) for kk, vv in _flatten_tables(v, leaf)]
        else:
            out.append((k, v))
    return out


def _sample(dist: dict, rng: random.Random, where: str) -> Any:
    kind, arg = next(iter(dist.items()))
    try:
        if kind == "choice":
            if not isinstance(arg, list) or not arg:
                raise ValueError("a non-empty list")
            return rng.choice(arg)
        lo, hi = arg
        if kind == "int":
            return rng.randint(int(lo), int(hi))
        if kind == "uniform":
            return float(f"{rng.uniform(float(lo), float(hi)):.6g}")
        if float(lo) <= 0 or float(hi) <= 0:
            raise ValueError("positive bounds")
        return float(f"{math.exp(rng.uniform(math.log(float(lo)), math.log(float(hi)))):.6g}")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: bad distribution {dist} ({exc})",
                          "write {uniform = [lo, hi]}, {log_uniform = [lo, hi]}, {int = [lo, hi]} or "
                          "{choice = [a, b, ...]}") from None


def _lookup(values: dict, name: str):
    if name in values:
        return values[name]
    if "." in name:
        base, sub = name.split(".", 1)
        if isinstance(values.get(base), dict) and sub in values[base]:
            return values[base][sub]
    raise KeyError(name)


def _render(v: Any, values: dict, where: str) -> Any:
    if isinstance(v, str):
        def rep(m):
            try:
                return _scalar_text(_lookup(values, m.group(1)))
            except KeyError:
                raise ConfigError(f"{where}: '{{{m.group(1)}}}' in '{v}' names no option of this run",
                                  f"use one of {', '.join(sorted(values))}") from None

        return _PLACEHOLDER.sub(rep, v)
    if isinstance(v, list):
        return [_render(x, values, where) for x in v]
    if isinstance(v, dict):
        return {k: _render(x, values, where) for k, x in v.items()}
    return v


def _scalar_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def point_hash(options: dict) -> str:
    """A stable name for a point: the first 12 hex digits of the SHA-1 of its sorted JSON options."""
    return hashlib.sha1(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:12]


def train_args(options: dict, table: dict | None = None) -> list[str]:
    """The ``vdgtool train`` arguments of a point (without ``-o`` / ``--resume``), options sorted by key."""
    table = table or option_table()
    args: list[str] = []
    for key in sorted(options):
        opt, _ = table[key]
        v = options[key]
        if v is None:
            continue
        if opt.is_flag:
            if v:
                args.append(opt.flag)
            elif opt.param.secondary_opts:
                args.append(opt.param.secondary_opts[0])
            continue
        if opt.multiple:
            if isinstance(v, dict):
                args += [x for k, vv in sorted(v.items()) for x in (opt.flag, f"{k}={_scalar_text(vv)}")]
            else:
                for item in (v if isinstance(v, list) else [v]):
                    args += [opt.flag, *([_scalar_text(x) for x in item] if isinstance(item, list)
                                         else [_scalar_text(item)])]
            continue
        args += [opt.flag, *([_scalar_text(x) for x in v] if isinstance(v, list) else [_scalar_text(v)])]
    return args


@dataclass
class Point:
    options: dict               # canonical option -> value (templates filled in)
    arm: str | None
    seed: int | None
    name: str                   # run directory, relative to the sweep directory
    hash: str
    args: list[str] = field(default_factory=list)

    def record(self) -> dict:
        return {"hash": self.hash, "name": self.name, "arm": self.arm, "seed": self.seed, "options": self.options,
                "args": self.args}


@dataclass
class Spec:
    path: str
    raw: dict
    points: list[Point]
    duplicates: list[tuple[str, str]]   # (dropped point, same as point): identical options
    launcher: str | None
    local: dict
    slurm: dict


def read_spec_file(path: str) -> dict:
    if not os.path.isfile(path):
        raise InputError(f"sweep spec {path} does not exist", "pass a TOML (or JSON) spec file")
    try:
        if path.lower().endswith(".json"):
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        try:
            import tomllib
        except ImportError:  # Python < 3.11
            try:
                import tomli as tomllib  # type: ignore[no-redef]
            except ImportError:
                raise ConfigError("reading a TOML spec needs Python 3.11+ or the tomli package",
                                  "pip install tomli, or write the spec as JSON") from None
        with open(path, "rb") as f:
            return tomllib.load(f)
    except ValueError as exc:  # tomllib.TOMLDecodeError and json.JSONDecodeError are ValueErrors
        raise ConfigError(f"cannot parse {path} ({exc})", "fix the TOML/JSON syntax") from None


def _seeds(raw: dict) -> list[int | None]:
    s = raw.get("seeds")
    if s is None:
        return [None]
    if isinstance(s, bool) or not (isinstance(s, int) or (isinstance(s, list) and all(
            isinstance(x, int) and not isinstance(x, bool) for x in s))):
        raise ConfigError(f"seeds = {s!r}", "write seeds = [0, 1, 2] or seeds = 3")
    seeds = list(range(s)) if isinstance(s, int) else list(s)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds = {s!r}: empty or repeated", "list distinct seeds")
    return seeds


def expand(raw: dict, path: str = "spec", sweep_dir: str | None = None, cmd: click.Command | None = None) -> Spec:
    """Every point of a spec, checked against the train command's options and parsed by click."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} is not a table of settings", "see docs/workflow.md for the spec format")
    unknown = [k for k in raw if k not in TOP_KEYS]
    if unknown:
        hint = ("train options go under [train], [grid], [random] or [[arms]]"
                if any(k in option_table(cmd) for k in unknown) else f"the spec keys are {', '.join(TOP_KEYS)}")
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}", hint)
    for t in ("train", "grid", "random", "local", "slurm"):
        if not isinstance(raw.get(t) or {}, dict):
            raise ConfigError(f"{path}: {t} must be a table", f"write [{t}] followed by key = value lines")
    if not isinstance(raw.get("random_seed", 0), int) or isinstance(raw.get("random_seed"), bool):
        raise ConfigError(f"{path}: random_seed = {raw['random_seed']!r}", "write random_seed = N (an integer)")
    table = option_table(cmd)
    base: dict = {}
    for k, v in (raw.get("train") or {}).items():
        key, val, sub = _normalize(k, v, table, f"{path} [train]")
        _set(base, key, val, sub)
    arms = raw.get("arms") or [None]
    if not isinstance(arms, list):
        raise ConfigError(f"{path}: arms must be an array of tables", "write [[arms]] blocks")
    arm_list = []
    for i, a in enumerate(arms):
        if a is None:
            arm_list.append((None, {}))
            continue
        if not isinstance(a, dict):
            raise ConfigError(f"{path}: arm {i + 1} is not a table", "write [[arms]] blocks of options")
        a = dict(a)
        name = str(a.pop("name", f"arm{i}"))
        opts: dict = {}
        for k, v in a.items():
            key, val, sub = _normalize(k, v, table, f"{path} arm '{name}'")
            _set(opts, key, val, sub)
        arm_list.append((name, opts))
    names = [n for n, _ in arm_list if n is not None]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: two arms share a name", "give every [[arms]] a distinct name")
    grid_axes = []
    for k, vals in _flatten_tables(raw.get("grid") or {}, leaf=lambda v: False):
        if not isinstance(vals, list) or not vals:
            raise ConfigError(f"{path} [grid] {k}: expected a non-empty list of values", f"write {k} = [a, b]")
        norm = [_normalize(k, v, table, f"{path} [grid]") for v in vals]
        grid_axes.append(norm)
    dists = [(k, d) for k, d in _flatten_tables(raw.get("random") or {}, leaf=_is_distribution)]
    n_samples = raw.get("random_samples", 1 if dists else 0)
    if dists and (not isinstance(n_samples, int) or n_samples < 1):
        raise ConfigError(f"{path}: random_samples = {n_samples!r}", "write random_samples = N (N >= 1)")
    for k, d in dists:
        if not _is_distribution(d):
            raise ConfigError(f"{path} [random] {k} = {d!r} is not a distribution",
                              f"write {k} = {{uniform = [lo, hi]}} (or log_uniform, int, choice)")
    rng = random.Random(int(raw.get("random_seed", 0)))
    samples: list[list[tuple]] = [[]]
    if dists:
        samples = [[_normalize(k, _sample(d, rng, f"{path} [random] {k}"), table, f"{path} [random]")
                    for k, d in dists] for _ in range(n_samples)]
    seeds = _seeds(raw)
    if seeds != [None]:
        if "seed" not in table:
            raise ConfigError("vdgtool train has no --seed option", "remove seeds from the spec")
        if "seed" in base or any("seed" in o for _, o in arm_list) or any(ax[0][0] == "seed" for ax in grid_axes):
            raise ConfigError(f"{path} sets both seeds and a seed option", "keep one: seeds = [...] at the top")
    template = raw.get("run_name")
    if template is not None and (not isinstance(template, str) or not template.strip()):
        raise ConfigError(f"{path}: run_name = {template!r}", 'write e.g. run_name = "seed{seed}/{arm}"')

    points: list[Point] = []
    seen: dict[str, Point] = {}
    duplicates = []
    names_seen: dict[str, str] = {}
    for (arm, arm_opts), combo, sample, seed in itertools.product(arm_list, itertools.product(*grid_axes),
                                                                  samples, seeds):
        opts = copy.deepcopy(base)
        for k, v in arm_opts.items():
            _set(opts, k, copy.deepcopy(v), None)
        for key, val, sub in list(combo) + list(sample):
            _set(opts, key, copy.deepcopy(val), sub)
        if seed is not None:
            opts["seed"] = seed
        where = f"{path} (arm {arm}, seed {seed})" if arm else f"{path} (seed {seed})"
        values = {**opts, **({"arm": arm} if arm is not None else {}),
                  **({"sweep_dir": os.path.abspath(sweep_dir)} if sweep_dir else {})}
        opts = {k: _render(v, values, where) for k, v in opts.items()}
        h = point_hash(opts)
        if h in seen:
            duplicates.append((f"{arm or ''}/seed{seed}", seen[h].name))
            continue
        name = h
        if template:
            values = {**opts, **({"arm": arm} if arm is not None else {}), "hash": h}
            name = os.path.normpath(_render(template, values, f"{path} run_name"))
            if name.startswith("..") or os.path.isabs(name):
                raise ConfigError(f"{path}: run_name gives '{name}', outside the sweep directory",
                                  "use a relative template such as seed{seed}/{arm}")
            if name in names_seen:
                raise ConfigError(f"{path}: run_name gives '{name}' for two different runs",
                                  "add the options that differ to the template (or leave run_name out: hashes)")
            names_seen[name] = h
        p = Point(opts, arm, seed, name, h)
        p.args = train_args(opts, table)
        check_args(p, cmd)
        seen[h] = p
        points.append(p)
    if not points:
        raise ConfigError(f"{path} gives no run", "add [train] options, [[arms]] or a [grid]")
    return Spec(path, raw, points, duplicates, raw.get("launcher"), dict(raw.get("local") or {}),
                dict(raw.get("slurm") or {}))


def check_args(p: Point, cmd: click.Command | None = None) -> None:
    """Let click parse the point's command line (types, choices, ranges) without running it."""
    cmd = cmd or train_command()
    try:
        ctx = cmd.make_context("train", [*p.args, "-o", p.name], resilient_parsing=False)
        ctx.close()
    except click.exceptions.Exit:
        pass
    except click.ClickException as exc:
        raise ConfigError(f"run {p.name} ({p.arm or ''} seed {p.seed}): {exc.format_message()}",
                          "fix the value in the spec") from None


def load_spec(path: str, sweep_dir: str | None = None) -> Spec:
    return expand(read_spec_file(path), path, sweep_dir)
