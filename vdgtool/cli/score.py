"""vdgtool score: dynamic scores of a video model / static bias of a dataset."""

from __future__ import annotations

import click

from vdgtool.cli.common import FiniteFloat, at_file_callback, device_option, emit, json_option, workers_option


@click.command("score")
@click.argument("checkpoint", required=False, type=click.Path())
@click.option("--data", multiple=True, required=True, type=click.Path(), callback=at_file_callback,
              help="Clip store(s) to score (repeatable; classes aligned by the checkpoint's class names).")
@click.option("--flow", "flow_stores", multiple=True, type=click.Path(), callback=at_file_callback,
              help="Flow store(s) paired by video key with --data, for RGB + flow checkpoints (every input clip is "
                   "perturbed alike; the fused prediction is scored).")
@click.option("--method", type=click.Choice(["freeze", "shuffle", "distill"]), default="freeze", show_default=True,
              help="freeze / shuffle: training-free KL(f(x)||f(x~)) (Eq. 4); distill: KL to a spatial student (Eq. 2).")
@click.option("--frame", type=click.Choice(["first", "middle", "random"]), default="middle", show_default=True,
              help="freeze: which frame is repeated (random: one drawn per clip with --seed).")
@click.option("--permute", type=click.Choice(["clip", "batch"]), default="clip", show_default=True,
              help="shuffle: a new frame permutation per clip, or one per batch.")
@click.option("--target", type=click.Choice(["model", "labels"]), default="model", show_default=True,
              help="labels: ground-truth labels replace the video model (the dataset's static bias, Eq. 5).")
@click.option("--student", default=None,
              help="distill: spatial student, a registry model (frame2d:resnet50, test_frame2d) or timm:NAME "
                   "(a timm 2D net per frame).  [default: frame2d:resnet18, or timm:resnet18 without frame2d]")
@click.option("--student-pretrained", is_flag=True, help="distill: start the student from its published weights.")
@click.option("--student-epochs", type=click.IntRange(min=1), default=10, show_default=True,
              help="distill: student training epochs.")
@click.option("--student-lr", type=FiniteFloat(min=0, min_open=True), default=1e-3, show_default=True, help="distill: AdamW learning rate.")
@click.option("--student-wd", type=FiniteFloat(min=0), default=1e-4, show_default=True, help="distill: AdamW weight decay.")
@click.option("--holdout", type=FiniteFloat(min=0, max=1, min_open=True, max_open=True), default=0.5, show_default=True,
              help="distill: fraction of --data held out (class-stratified, seeded) to report the score on.")
@click.option("--heldout", "heldout_stores", multiple=True, type=click.Path(),
              help="distill: score on this store instead (the student then trains on all of --data).")
@click.option("--num-clips", type=click.IntRange(min=1), default=1, show_default=True,
              help="Test clips per video (scores averaged per video).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--per-class/--no-per-class", default=True, show_default=True, help="Print the per-class table.")
@click.option("--per-clip", is_flag=True, help="Keep every clip's KL in the --json output.")
@click.option("--plot", "plot_png", type=click.Path(dir_okay=False),
              help="Write a per-class bar chart of the score (PNG; needs the 'plot' extra).")
@click.option("--amp", type=click.Choice(["auto", "off", "bf16", "fp16"]), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Random frames / permutations / split / student.")
@device_option
@workers_option
@json_option
def score(checkpoint, data, flow_stores, method, frame, permute, target, student, student_pretrained, student_epochs, student_lr,
          student_wd, holdout, heldout_stores, num_clips, batch_size, per_class, per_clip, plot_png, amp, seed, device,
          workers, as_json):
    """Dynamic score of a video model (CKPT: checkpoint file or run dir) on clip stores.

    The score is a KL divergence in nats, averaged over clips (>= 0; higher = the model relies more on
    motion). freeze repeats one frame, shuffle permutes the frames, distill trains a purely spatial
    student on part of the data and reports KL(f || student) on the rest. With --target labels the
    ground truth replaces the model: the static bias of the dataset (CKPT optional with distill).
    Also reported: accuracy of the clean / perturbed (or student) predictions, the agreement rate of
    their arg-max with the video model, per-class and per-domain scores.

    \b
    Examples:
      vdgtool score --method freeze runs/erm --data real_val.h5
      vdgtool score --method shuffle runs/erm/checkpoints/best.pt --data a.h5 --permute batch --json
      vdgtool score --method distill runs/erm --data real_val.h5 --student timm:resnet18 --student-epochs 20
      vdgtool score --method distill --target labels --student frame2d:resnet18 --data ucf101_train.h5
      vdgtool score --method freeze runs/erm --data real_val.h5 --plot freeze_per_class.png
    """
    import torch

    from vdgtool.cli.common import resolve_device
    from vdgtool.evaluate.dynamic import dynamic_score

    torch.set_num_threads(min(torch.get_num_threads(), 8))
    dev = resolve_device(device)
    res = dynamic_score(checkpoint, data, method=method, heldout_stores=heldout_stores, device=dev,
                        batch_size=batch_size, workers=workers, num_clips=num_clips, seed=seed, student=student,
                        frame=frame, permute=permute, target=target, amp=amp, holdout=holdout,
                        student_pretrained=student_pretrained, epochs=student_epochs, lr=student_lr,
                        weight_decay=student_wd, flow_stores=list(flow_stores))
    if not per_clip:
        res.pop("per_clip", None)
    if plot_png:
        from vdgtool.evaluate.plots import plot_per_class

        res["plot_png"] = plot_per_class(res["per_class"], plot_png, key="score", reference=res["score"],
                                         xlabel="dynamic score (nats)", title=f"{method} score per class")
    if as_json:
        emit(res, True)
        return
    rows = [("checkpoint", res.get("checkpoint")), ("data", ", ".join(res["data"])), ("method", method),
            ("divergence", res["kl"]), ("clips", res["n"]),
            ("score (nats)", f"{res['score']:.4g} ± {res['score_se']:.2g} (SE)"),
            ("median", res["score_median"]), ("agreement", res["agreement"])]
    if res.get("acc_video") is not None:
        rows.append(("acc video model", res["acc_video"]))
    if "acc_perturbed" in res:
        rows.append(("acc perturbed", res["acc_perturbed"]))
    if "acc_student" in res:
        rows.append(("acc student", res["acc_student"]))
    if res.get("plot_png"):
        rows.append(("per-class plot", res["plot_png"]))
    emit(res, False, rows)
    if per_class and res["per_class"]:
        click.echo("")
        emit(None, False, [(c, v["n"], v["score"], v["agreement"]) for c, v in res["per_class"].items()],
             headers=("class", "clips", "score", "agreement"))
    if len(res.get("per_domain", {})) > 1:
        click.echo("")
        emit(None, False, [(d, v["n"], v["score"], v["agreement"]) for d, v in res["per_domain"].items()],
             headers=("domain", "clips", "score", "agreement"))
