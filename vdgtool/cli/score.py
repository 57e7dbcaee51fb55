"""vdgtool score: dynamic scores of a video model / static bias of a dataset."""

from __future__ import annotations

import click

from vdgtool.cli.common import FiniteFloat, at_file_callback, device_option, emit, json_option, workers_option


def _f(v, fmt=".4g"):
    return "" if v is None or v != v else format(v, fmt)


@click.command("score")
@click.argument("checkpoint", metavar="[CKPT_OR_RUN_DIR]", required=False, type=click.Path())
@click.option("--data", multiple=True, type=click.Path(), callback=at_file_callback,
              help="Clip store(s) to score (repeatable; classes aligned by the checkpoint's class names). Default: "
                   "the run's first validation store, else its training store (named on stderr and in --json).")
@click.option("--flow", "flow_stores", multiple=True, type=click.Path(), callback=at_file_callback,
              help="Flow store(s) paired by video key with --data, for RGB + flow checkpoints (every input clip is "
                   "perturbed alike; the fused prediction is scored).")
@click.option("--method", type=click.Choice(["freeze", "shuffle", "distill"]), default="freeze", show_default=True,
              help="freeze / shuffle: training-free KL(f(x)||f(x~)) (Eq. 4); distill: KL to a spatial student (Eq. 2).")
@click.option("--frame", type=click.Choice(["first", "middle", "random"]), default="first", show_default=True,
              help="freeze: which frame is repeated (first: the release and drl-freeze; random: one per clip, --seed).")
@click.option("--permute", type=click.Choice(["batch", "clip"]), default="batch", show_default=True,
              help="shuffle: one frame permutation per batch (the release and drl-shuffle), or a new one per clip.")
@click.option("--views", type=click.Choice(["logits", "kl"]), default="logits", show_default=True,
              help="Several test clips per video: KL of the view-averaged logits (the release), or the mean of the "
                   "per-view KLs.")
@click.option("--target", type=click.Choice(["model", "labels"]), default="model", show_default=True,
              help="labels: ground-truth labels replace the video model (the dataset's static bias, Eq. 5).")
@click.option("--protocol", type=click.Choice(["paper", "fast"]), default="paper", show_default=True,
              help="distill: paper = the release's (25 epochs SGD lr 0.01, momentum 0.9, wd 1e-4, lr x0.1 every 10 "
                   "epochs, augmented training clips, live teacher outputs, on the run's training store); fast = 10 "
                   "epochs AdamW 1e-3 cosine against teacher outputs cached once on test clips.")
@click.option("--student", default=None,
              help="distill: spatial student, a registry model (frame2d:resnet18, test_frame2d) or timm:NAME "
                   "(a timm 2D net per frame).  [default: frame2d:resnet18.tv_in1k, the release's ResNet-18]")
@click.option("--student-pretrained/--student-scratch", default=True, show_default=True,
              help="distill: start the student from ImageNet weights (timm download or cache), or from scratch.")
@click.option("--student-weights", type=click.Path(),
              help="distill: local ImageNet weights of the student's 2D backbone (timm / torchvision state dict), "
                   "for offline machines.")
@click.option("--student-data", "student_stores", multiple=True, type=click.Path(), callback=at_file_callback,
              help="distill: store(s) the student trains on. Default (--protocol paper): the run's training "
                   "store(s); otherwise a --holdout split of --data.")
@click.option("--student-epochs", type=click.IntRange(min=1), default=None,
              help="distill: student training epochs.  [default: the protocol's, 25 (paper) / 10 (fast)]")
@click.option("--student-lr", type=FiniteFloat(min=0, min_open=True), default=None,
              help="distill: student learning rate.  [default: 0.01 SGD (paper) / 1e-3 AdamW (fast)]")
@click.option("--student-wd", type=FiniteFloat(min=0), default=None,
              help="distill: student weight decay.  [default: 1e-4]")
@click.option("--holdout", type=FiniteFloat(min=0, max=1, min_open=True, max_open=True), default=0.5, show_default=True,
              help="distill without separate student data: fraction of --data scored (class-stratified, seeded); "
                   "the rest trains the student.")
@click.option("--heldout", "heldout_stores", multiple=True, type=click.Path(),
              help="distill, older spelling: score this store, the student training on --data "
                   "(= --student-data DATA --data HELDOUT).")
@click.option("--num-clips", type=click.IntRange(min=1), default=1, show_default=True,
              help="Test clips per video (see --views).")
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
def score(checkpoint, data, flow_stores, method, frame, permute, views, target, protocol, student, student_pretrained,
          student_weights, student_stores, student_epochs, student_lr, student_wd, holdout, heldout_stores, num_clips,
          batch_size, per_class, per_clip, plot_png, amp, seed, device, workers, as_json):
    """Dynamic score of a video model (CKPT: checkpoint file, or run dir = its best.pt) on clip stores.

    The score is a KL divergence in nats, averaged over videos (>= 0; higher = the model relies more
    on motion). freeze repeats the first frame, shuffle permutes the frames, distill trains a purely
    spatial student (the release's ImageNet ResNet-18 per frame) on the run's training store and
    reports KL(f || student) on --data. With no --data the run's first validation store is scored.
    With --target labels the ground truth replaces the model: the static bias of the dataset (CKPT
    optional with distill). Also reported: accuracy of the clean / perturbed (or student)
    predictions, the agreement rate of their arg-max with the video model, per-class and per-domain
    scores.

    \b
    Examples:
      vdgtool score --method freeze runs/erm
      vdgtool score --method shuffle runs/erm/checkpoints/best.pt --data a.h5 --json
      vdgtool score --method distill runs/erm --data k200_val.h5 --student-data k200_train.h5 --batch-size 64
      vdgtool score --method distill runs/erm --protocol fast --student test_frame2d --student-scratch
      vdgtool score --method distill --target labels --student-data ucf_train.h5 --data ucf_test.h5
      vdgtool score --method freeze runs/erm --data real_val.h5 --plot freeze_per_class.png
    """
    import torch

    from vdgtool.cli.common import resolve_device
    from vdgtool.evaluate.dynamic import dynamic_score

    torch.set_num_threads(min(torch.get_num_threads(), 8))
    dev = resolve_device(device)
    res = dynamic_score(checkpoint, list(data), method=method, student_stores=list(student_stores),
                        heldout_stores=list(heldout_stores), protocol=protocol, device=dev, batch_size=batch_size,
                        workers=workers, num_clips=num_clips, seed=seed, student=student, frame=frame, permute=permute,
                        views=views, target=target, amp=amp, holdout=holdout, student_pretrained=student_pretrained,
                        student_weights=student_weights, epochs=student_epochs, lr=student_lr, weight_decay=student_wd,
                        flow_stores=list(flow_stores))
    if not per_clip:
        res.pop("per_clip", None)
    if plot_png:
        from vdgtool.evaluate.plots import plot_per_class

        res["plot_png"] = plot_per_class(res["per_class"], plot_png, key="score", reference=res["score"],
                                         xlabel="dynamic score (nats)", title=f"{method} score per class")
    if as_json:
        emit(res, True)
        return
    src = res.get("data_source", "given")
    rows = [("checkpoint", res.get("checkpoint")),
            ("data", ", ".join(res["data"]) + ("" if src == "given" else f"  ({src})")),
            ("method", method + (f" (frame {res['frame']})" if "frame" in res else "")
             + (f" (permute per {res['permute']})" if "permute" in res else "")),
            ("divergence", res["kl"] + (f", views: {res['views']}" if num_clips > 1 else "")), ("videos", res["n"])]
    if method == "distill":
        st = res["student_train"]
        sched = (f"{st['optimizer']} lr {st['lr']:g} wd {st['weight_decay']:g} {st['schedule']}"
                 + (f" {st['step_size']}x{st['gamma']:g}" if st.get("schedule") == "step" else ""))
        rows += [("protocol", f"{res['protocol']}: {st['epochs']} epochs, {sched}, teacher {st['teacher']}, "
                              f"augment {'yes' if st.get('augment') else 'no'}"),
                 ("student", f"{res['student']} ({res['student_init']})"),
                 ("student trained on", f"{st['data']} ({st['n']} videos)")]
    rows += [("score (nats)", f"{_f(res['score'])} ± {_f(res['score_se'], '.2g')} (SE)"),
             ("median", _f(res["score_median"])), ("agreement", _f(res["agreement"], ".3f"))]
    if res.get("acc_video") is not None:
        rows.append(("acc video model", _f(res["acc_video"], ".3f")))
    if "acc_perturbed" in res:
        rows.append(("acc perturbed", _f(res["acc_perturbed"], ".3f")))
    if "acc_student" in res:
        rows.append(("acc student", _f(res["acc_student"], ".3f")))
    if res.get("plot_png"):
        rows.append(("per-class plot", res["plot_png"]))
    emit(res, False, rows)
    if per_class and res["per_class"]:
        click.echo("")
        emit(None, False, [(c, v["n"], _f(v["score"]), _f(v["agreement"], ".3f")) for c, v in res["per_class"].items()],
             headers=("class", "videos", "score", "agreement"))
    if len(res.get("per_domain", {})) > 1:
        click.echo("")
        emit(None, False, [(d, v["n"], _f(v["score"]), _f(v["agreement"], ".3f")) for d, v in res["per_domain"].items()],
             headers=("domain", "videos", "score", "agreement"))
