"""`vdgtool --help` and every `VERB --help` without importing torch; shell completion for bash/zsh/fish."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from vdgtool.cli import COMMANDS

HEAVY = ("torch", "torchvision", "timm", "cv2", "av", "decord", "h5py", "matplotlib", "sklearn", "tensorboard",
         "wandb", "submitit")

# Runs in a fresh interpreter: walks the command tree, runs each --help through the real entry point and
# records the heavy modules imported so far and the seconds each took.
WALK = r"""
import json, sys, time, click
from vdgtool.cli import cli, main
HEAVY = %r
def paths():
    yield []
    for name in cli.list_commands(None):
        cmd = cli.get_command(None, name)
        yield [name]
        if isinstance(cmd, click.Group):
            for sub in cmd.list_commands(None):
                yield [name, sub]
out = []
for p in list(paths()):
    t = time.perf_counter()
    try:
        main([*p, "--help"])
    except SystemExit as e:
        code = e.code
    out.append({"cmd": " ".join(p) or "(vdgtool)", "code": code, "s": time.perf_counter() - t,
                "heavy": [m for m in HEAVY if m in sys.modules]})
print(json.dumps(out), file=sys.stderr)
""" % (HEAVY,)


def test_every_help_without_torch_and_fast():
    r = subprocess.run([sys.executable, "-c", WALK], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stderr.strip().splitlines()[-1])
    verbs = {x["cmd"].split()[0] for x in res if x["cmd"] != "(vdgtool)"}
    assert verbs == set(COMMANDS)
    assert {"store ls", "store info", "plot curves", "plot features", "sweep run", "sweep status"} <= {
        x["cmd"] for x in res}
    for x in res:
        assert x["code"] in (0, None), x
        # the first help that pulls in torch (or another heavy library) is named here
        assert x["heavy"] == [], f"`vdgtool {x['cmd']} --help` imported {x['heavy']}"
        assert x["s"] < 1.0, f"`vdgtool {x['cmd']} --help` took {x['s']:.2f} s"
    assert "Usage: vdgtool" in r.stdout and "sweep" in r.stdout


def _complete(words: str, cword: int, shell: str = "bash") -> str:
    env = dict(os.environ, COMP_WORDS=words, COMP_CWORD=str(cword), _VDGTOOL_COMPLETE=f"{shell}_complete")
    r = subprocess.run([sys.executable, "-m", "vdgtool"], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr[-1000:]
    return r.stdout


def test_completion_scripts_and_what_they_complete(run_cli):
    for shell, marker in (("bash", "complete -o nosort -F _vdgtool_completion vdgtool"), ("zsh", "#compdef vdgtool"),
                          ("fish", "complete --no-files --command vdgtool")):
        code, out, err = run_cli("completion", shell)
        assert code == 0 and marker in out and f"_VDGTOOL_COMPLETE={shell}_source" not in out, shell
        assert f"{shell}_complete" in out
    # the verbs, then a verb's options, as the bash script asks for them (python -m vdgtool stands for vdgtool)
    verbs = [ln.split(",", 1)[1] for ln in _complete("vdgtool ", 1).splitlines()]
    assert set(COMMANDS) <= set(verbs)
    opts = [ln.split(",", 1)[1] for ln in _complete("vdgtool collect --", 2).splitlines()]
    assert {"--select", "--format", "--compare-selection", "--group-by"} <= set(opts)
    fmts = [ln.split(",", 1)[1] for ln in _complete("vdgtool collect --format ", 3).splitlines()]
    assert fmts == ["table", "markdown", "latex", "csv", "json"]
    subs = [ln.split(",", 1)[1] for ln in _complete("vdgtool store ", 2).splitlines()]
    assert {"info", "ls", "verify", "merge"} <= set(subs)
