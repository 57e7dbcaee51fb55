"""train --logger: the TensorBoard and W&B loggers, read back from what they wrote."""

from __future__ import annotations

import glob
import os

import pytest

from vdgtool.errors import ConfigError, MissingDependencyError
from vdgtool.train.loggers import RunLogger, build_loggers, epoch_scalars, parse_logger_names

CONFIG = {"method": "drl-freeze", "lr": 0.01, "hp": {"lam": 0.5}, "val": ["real.h5", "anim.h5"],
          "provenance": {"command": "vdgtool train ..."}}
RECORDS = [{"epoch": e, "step": 4 * (e + 1), "train_loss": 1.0 / (e + 1), "lr": 0.01,
            "val": {"real": {"top1": 0.5 + 0.1 * e, "n": 16}, "anim": {"top1": 0.25 + 0.05 * e, "n": 16}}}
           for e in range(3)]
SUMMARY = {"final": RECORDS[-1], "best_val_top1": 0.7}


def _drive(loggers):
    for lg in loggers:
        lg.log_hparams(CONFIG)
    for e, rec in enumerate(RECORDS):
        for s in range(4 * e + 1, 4 * e + 5):
            for lg in loggers:
                lg.log_step(s, {"loss": 2.0 / s, "lr": 0.01, "nan_term": float("nan")})
        for lg in loggers:
            lg.log_epoch(e, rec["step"], rec)
    for lg in loggers:
        lg.log_event(12, "bank_fill", {"fill": 0.75, "added": ["a", "b", "c"]})
        lg.close(SUMMARY)


def test_names_csv_is_no_extra_logger_and_unknown_refused(tmp_path):
    assert parse_logger_names(["csv,tensorboard", "csv", " wandb"]) == ["csv", "tensorboard", "wandb"]
    assert build_loggers(["csv"], str(tmp_path), CONFIG) == []
    with pytest.raises(ConfigError, match="unknown logger 'mlflow'"):
        parse_logger_names(["csv,mlflow"])
    assert epoch_scalars(RECORDS[1]) == {"epoch/train_loss": 0.5, "epoch/lr": 0.01, "val/real/top1": 0.6,
                                         "val/real/n": 16.0, "val/anim/top1": pytest.approx(0.3),
                                         "val/anim/n": 16.0}
    RunLogger().log_event(0, "x", {})  # the base class accepts every call


def test_missing_extra_is_one_line_error(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name.split(".")[0] == "tensorboard":
            raise ImportError("No module named 'tensorboard'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(MissingDependencyError, match=r"pip install 'vdgtool\[tensorboard\]'") as e:
        build_loggers(["tensorboard"], str(tmp_path), CONFIG)
    assert "\n" not in str(e.value)


def test_tensorboard_event_file_read_back(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    _drive(build_loggers(["csv", "tensorboard"], str(run), CONFIG))
    files = glob.glob(str(run / "tb" / "events.out.tfevents.*"))
    assert len(files) == 1
    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(1, 13))
    assert loss[3].value == pytest.approx(0.5)
    assert [e.step for e in acc.Scalars("val/real/top1")] == [4, 8, 12]
    assert [round(e.value, 4) for e in acc.Scalars("val/anim/top1")] == [0.25, 0.3, 0.35]
    assert [e.value for e in acc.Scalars("epoch/train_loss")] == pytest.approx([1.0, 0.5, 1 / 3])
    assert acc.Scalars("event/bank_fill/fill")[0].value == 0.75
    assert acc.Scalars("event/bank_fill/added_count")[0].value == 3
    assert acc.Scalars("hparam/best_val_top1")[0].value == pytest.approx(0.7)
    # the configuration as a text table and in the HParams plugin (provenance left out)
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| hp.lam | 0.5 |" in text and "provenance" not in text
    hp = acc.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(hp)
    assert b"hp.lam" in hp["_hparams_/session_start_info"] and b"hparam/best_val_top1" in hp["_hparams_/experiment"]
    assert "train/nan_term" in tags["scalars"]  # NaN is logged (a gap in the plot), not dropped silently


def test_wandb_offline_without_configuration(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for k in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc from `wandb login`
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wbconfig"))
    run = tmp_path / "run"
    loggers = build_loggers(["wandb"], str(run), CONFIG)
    assert loggers[0].mode == "offline"
    _drive(loggers)
    offline = glob.glob(str(run / "wandb" / "offline-run-*" / "*.wandb"))
    assert len(offline) == 1
    run_id = (run / "wandb_id.txt").read_text().strip()
    assert offline[0].endswith(f"run-{run_id}.wandb")
    import time

    import wandb

    wandb.teardown()  # the W&B service writes the offline log asynchronously: let it finish
    keys = (b"train/loss", b"val/anim/top1", b"event/bank_fill/fill", b"hparam/best_val_top1", b"hp.lam")
    deadline = time.time() + 60
    while True:
        blob = open(offline[0], "rb").read()  # the offline transaction log holds every key we logged
        if all(k in blob for k in keys) or time.time() > deadline:
            break
        time.sleep(0.5)
    for key in keys:
        assert key in blob, key
    assert os.path.getsize(offline[0]) > 0
