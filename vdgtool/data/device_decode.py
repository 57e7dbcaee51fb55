"""JPEG clips decoded on the training device (nvJPEG on CUDA), a batch at a time.

With device decoding on, a loader worker reads the *compressed* frames an item samples and records the item's
random generator right after sampling; the main process decodes the whole batch on the device in one call
(``torchvision.io.decode_jpeg(list, device="cuda")``) and applies the dataset's transform there, continuing
from the recorded generator. So an item gets the same frames, crop, flip and colour jitter as on the CPU path
(pixels equal within JPEG decoder tolerance), and only the compressed bytes (~8x fewer) cross the bus.

``--decode auto`` (the default) turns it on for every stream that allows it when the run uses CUDA;
``--decode cpu`` keeps decoding in the workers; ``--decode cuda`` forces it and refuses a stream that cannot
(paired RGB + flow items, methods that build extra views in the loader, no JPEG store).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from vdgtool.errors import ConfigError
from vdgtool.utils.log import get_logger

log = get_logger("data")

DECODE_CHOICES = ("auto", "cpu", "cuda")
#: device types ``--decode cuda`` may decode on (the tests add "cpu" to run the same path without a GPU)
DEVICE_TYPES = ["cuda"]


@dataclasses.dataclass
class EncodedClip:
    """An item's clip before decoding: the JPEG files of its sampled frames (sampling order, repeats kept),
    the sampled indices' shape (num_clips, T), its generator's state after sampling, and its store."""

    bufs: list
    shape: tuple
    rng_state: dict
    store: int


class EncodedBatch:
    """The collated ``video`` field of a batch whose items (some or all) are :class:`EncodedClip`."""

    def __init__(self, items: list):
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        n = sum(isinstance(it, EncodedClip) for it in self.items)
        return f"EncodedBatch({len(self.items)} clips, {n} to decode)"


def blocker(dataset) -> str | None:
    """Why ``dataset`` cannot decode on the device (None: it can)."""
    if not hasattr(dataset, "device_decode"):
        return f"{type(dataset).__name__} is not a clip dataset"
    if dataset.paired:
        return "paired RGB + flow items are decoded in the loader workers"
    if dataset.views:
        return (f"the method builds extra views ({', '.join(dataset.views)}) of each clip in the loader, "
                "from decoded frames")
    if getattr(dataset.transform, "modality", "rgb") != "rgb":
        return "flow stores are not JPEG-encoded"
    if not any(s.encoding == "jpeg" for s in dataset.stores):
        return "none of its stores is JPEG-encoded (extract --encoding jpeg)"
    return None


def setup_decode(mode: str, device, datasets: dict[str, Any]) -> dict[str, str]:
    """Turn device decoding on or off for each named dataset (None entries skipped) -> {name: "device"|"workers"}.

    ``mode``: ``auto`` (on the device for every dataset that allows it when ``device`` is CUDA), ``cpu``
    (workers), ``cuda`` (the device, refusing a CPU device or a dataset that cannot, with the reason).
    """
    if mode not in DECODE_CHOICES:
        raise ConfigError(f"unknown --decode '{mode}'", f"use one of {', '.join(DECODE_CHOICES)}")
    dev = torch.device(device)
    if mode == "cuda" and dev.type not in DEVICE_TYPES:
        raise ConfigError(f"--decode cuda decodes JPEG clips on the GPU, but this run uses the {dev.type} device",
                          "run on a GPU (--device cuda), or pass --decode cpu")
    out = {}
    for name, ds in datasets.items():
        if ds is None:
            continue
        why = blocker(ds) if mode != "cpu" else "asked"
        if mode == "cuda" and why:
            raise ConfigError(f"--decode cuda cannot decode {name} on the GPU: {why}",
                              "pass --decode cpu (or auto, which decodes such streams in the workers)")
        on = mode == "cuda" or (mode == "auto" and dev.type == "cuda" and why is None)
        if mode == "auto" and dev.type == "cuda" and why:
            log.info("JPEG clips of %s are decoded in the loader workers: %s", name, why)
        if hasattr(ds, "device_decode"):
            ds.device_decode = on
        out[name] = "device" if on else "workers"
    return out


def decode_batch(dataset, batch: dict, device) -> dict:
    """Decode a batch's :class:`EncodedBatch` on ``device`` and apply ``dataset``'s transform there."""
    from vdgtool.data.dataset import _clips
    from vdgtool.stores.jpeg import decode_jpeg_list_torch

    v = batch.get("video")
    if not isinstance(v, EncodedBatch):
        return batch
    enc = [(k, it) for k, it in enumerate(v.items) if isinstance(it, EncodedClip)]
    imgs = decode_jpeg_list_torch([b for _, it in enc for b in it.bufs], device)  # one call for the batch
    out = [it.to(device, non_blocking=True) if isinstance(it, torch.Tensor) else it for it in v.items]
    pos = 0
    for k, it in enc:
        n = len(it.bufs)
        fr = torch.stack(imgs[pos:pos + n])  # (n, 3, H, W)
        pos += n
        frames = fr.permute(0, 2, 3, 1).reshape(*it.shape, fr.shape[2], fr.shape[3], 3)  # (clips, T, H, W, 3)
        rng = np.random.default_rng()
        rng.bit_generator.state = it.rng_state
        out[k] = _clips(dataset.transform, frames, rng, dataset.stores[it.store].conventions)
    return {**batch, "video": torch.stack(out)}


class DecodingLoader:
    """A DataLoader whose batches are decoded on ``device`` as they come (see :func:`decode_batch`)."""

    def __init__(self, loader, dataset, device):
        self.loader, self.dataset, self.device = loader, dataset, torch.device(device)

    def __iter__(self):
        for b in self.loader:
            yield decode_batch(self.dataset, b, self.device)

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name):
        return getattr(self.loader, name)


def base_dataset(dataset):
    """The dataset under any ``torch.utils.data.Subset`` wrappers."""
    while isinstance(dataset, torch.utils.data.Subset):
        dataset = dataset.dataset
    return dataset


__all__ = ["DECODE_CHOICES", "EncodedClip", "EncodedBatch", "DecodingLoader", "blocker", "setup_decode",
           "decode_batch", "base_dataset"]
