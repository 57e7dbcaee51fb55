"""``vdgtool extract``: decode a dataset into a clip store (streaming, parallel, sharded, resumable).

Pipeline: each video is decoded in batches (resized inside the decoder) and every batch is JPEG-encoded as soon
as it is decoded, so a worker never holds more than one decoded batch; with ``workers`` > 0, decoding and
encoding run in worker processes and the main process only writes (one HDF5 writer), in manifest order, so the
store is the same whatever the number of workers. Raw videos come back from the workers through shared memory
(a decoded video is ~10-100 MB; pickling it through the pool's pipe ran ~4x slower), JPEG ones through the pipe.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
from dataclasses import dataclass, field

from vdgtool.errors import DecodeError, InputError
import numpy as np

from vdgtool.stores.jpeg import encode_jpeg, encoder_name
from vdgtool.stores.video import EncodedVideo, VideoStoreWriter, encode_video, join_encoded
from vdgtool.utils.env import shard_items
from vdgtool.utils.log import get_logger, progress
from vdgtool.utils.provenance import make_provenance
from vdgtool.video.decode import AUTO_DECODERS, DecodeOptions, LimitExceeded, check_decoders, decode
from vdgtool.video.manifest import Item, Manifest

log = get_logger("extract")


@dataclass
class ExtractResult:
    path: str
    videos: int
    errors: list[dict] = field(default_factory=list)
    skipped_resume: int = 0
    decoders: dict = field(default_factory=dict)
    frames: int = 0

    def to_dict(self) -> dict:
        return {"store": self.path, "videos": self.videos, "errors": len(self.errors),
                "resumed_from": self.skipped_resume, "frames": self.frames, "decoders": self.decoders,
                "bad_inputs": self.errors}


def _init_worker() -> None:
    """One OpenCV thread per worker process: N workers on N cores, not N x cores threads."""
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass


@dataclass(frozen=True)
class _Job:
    """What every worker needs besides the item (sent with each task; small)."""

    opts: DecodeOptions
    encoding: str
    quality: int
    decoders: tuple
    share: bool = False  # in a worker process: leave raw videos in shared memory for the writer


@dataclass(frozen=True)
class _Shared:
    """A raw video a worker left in a shared-memory block for the writer, which unlinks it."""

    name: str
    shape: tuple
    dtype: str
    crc: int


def _shm_room(nbytes: int) -> bool:
    """Is there room for ``nbytes`` in /dev/shm (with a margin)? Writing past a full tmpfs would kill the worker
    with SIGBUS (containers often mount 64 MB), so a video that does not fit goes through the pipe instead."""
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return False
    return st.f_bavail * st.f_frsize >= 4 * nbytes + (64 << 20)


def _to_shared(parts: list) -> "_Shared | None":
    """Raw batches of one video -> one shared-memory block (one copy), or None when /dev/shm has no room."""
    from multiprocessing import shared_memory

    from vdgtool.stores.checksum import crc_of

    shape = (sum(len(p) for p in parts),) + tuple(parts[0].shape[1:])
    dtype = np.dtype(parts[0].dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if nbytes == 0 or not _shm_room(nbytes):
        return None
    shm = shared_memory.SharedMemory(create=True, size=nbytes)
    try:
        arr = np.ndarray(shape, dtype, buffer=shm.buf)
        t = 0
        for p in parts:
            arr[t:t + len(p)] = p
            t += len(p)
        crc = crc_of(arr)
        del arr
        shm.close()
    except BaseException:
        shm.close()
        shm.unlink()
        raise
    return _Shared(shm.name, shape, dtype.str, crc)


def _add_video(writer: VideoStoreWriter, key: str, frames, **kw) -> None:
    """``writer.add_video``, attaching (and then unlinking) a worker's shared-memory video."""
    if not isinstance(frames, _Shared):
        writer.add_video(key, frames, **kw)
        return
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(name=frames.name)
    try:
        enc = EncodedVideo("raw", frames.shape, np.ndarray(frames.shape, np.dtype(frames.dtype), buffer=shm.buf),
                           frames.crc)
        writer.add_video(key, enc, **kw)
        del enc
    finally:
        try:
            shm.close()
        except BufferError:  # an exception's traceback still holds the array: the mapping goes with it
            pass
        shm.unlink()


def _decode_encoded(path: str, job: _Job) -> tuple[EncodedVideo, dict]:
    """Decode ``path`` and encode each batch as it arrives (only one decoded batch is ever held)."""
    parts: list = []
    jpeg = job.encoding == "jpeg"  # decode() always gives uint8 RGB, which a JPEG store encodes

    def on_batch(batch):
        if batch is None:  # a reader failed half-way; the next one starts again
            parts.clear()
        else:
            parts.append((tuple(batch.shape), encode_jpeg(batch, job.quality)) if jpeg else batch)

    _, info = decode(path, job.opts, job.decoders, on_batch=on_batch)
    if jpeg:
        return join_encoded(parts), info
    if job.share and parts:
        shared = _to_shared(parts)
        if shared is not None:
            return shared, info
    return encode_video(np.concatenate(parts) if len(parts) > 1 else parts[0], "raw"), info


def _work(args):
    item, job = args
    if item.error:  # known bad before decoding (an unreadable class folder)
        return item, None, None, item.error
    try:
        enc, info = _decode_encoded(item.path, job)
        return item, enc, info, None
    except LimitExceeded as exc:  # its remedy names the option that lets the file through
        return item, None, None, str(exc)
    except DecodeError as exc:
        return item, None, None, exc.cause
    except MemoryError:
        return item, None, None, ("out of memory while decoding (lower --size, --fps or --max-frames, or use fewer "
                                  "--workers)")
    except Exception as exc:  # a worker must never take the batch down
        return item, None, None, f"{exc.__class__.__name__}: {' '.join(str(exc).split())[:200]}"


def extract(manifest: Manifest, out: str, *, opts: DecodeOptions | None = None, encoding: str = "jpeg",
            jpeg_quality: int = 90, workers: int = 0, num_shards: int = 1, shard_index: int = 0,
            resume: bool = False, overwrite: bool = False, seed: int = 0, limit: int | None = None,
            inputs: list[str] | None = None, decoders: tuple[str, ...] = AUTO_DECODERS) -> ExtractResult:
    """Decode every item of ``manifest`` (this shard's part) into a clip store at ``out``.

    ``decoders``: the readers to try in order (``("torchcodec",)`` needs the extra; refused up front when it
    cannot load). The store's content does not depend on ``workers``.

    Bad inputs are recorded in the store's ``/errors`` table and in the result, never raised.
    """
    opts = opts or DecodeOptions()
    decoders = tuple(decoders)
    check_decoders(decoders)
    if not manifest.items:
        raise InputError(f"no videos were found in {manifest.root}", "check the input folder or manifest")
    items: list[Item] = shard_items(manifest.items, num_shards, shard_index)
    if limit:
        items = items[:limit]
    conventions = opts.to_conventions()
    conventions.update({"num_shards": num_shards, "shard_index": shard_index})
    prov = make_provenance(seed=seed, parents=inputs or [manifest.root], manifest_form=manifest.form,
                           jpeg_encoder=encoder_name() if encoding == "jpeg" else None, decoders=list(decoders))
    # every shard, and a resumed run, sees the same domain list (in manifest order)
    domains: list[str] = []
    for it in manifest.items:
        if it.domain not in (None, "") and it.domain not in domains:
            domains.append(it.domain)
    writer = VideoStoreWriter(out, "clips", classes=manifest.classes, domains=domains, conventions=conventions,
                              provenance=prov, encoding=encoding, jpeg_quality=jpeg_quality, resume=resume,
                              overwrite=overwrite, input_digest=manifest.digest(),
                              inputs=list(inputs or []) + [it.path for it in manifest.items])
    todo = [it for it in items if it.key not in writer.done_keys]
    res = ExtractResult(path=out, videos=0, skipped_resume=len(items) - len(todo))
    if res.skipped_resume:
        log.info("resuming: %d of %d videos already done", res.skipped_resume, len(items))
    class_index = {c: i for i, c in enumerate(manifest.classes)}
    job = _Job(opts, encoding, int(jpeg_quality), decoders)
    pool = None
    try:
        if workers and workers > 0 and len(todo) > 1:
            ctx = mp.get_context("spawn" if os.name == "nt" else "forkserver")
            pool = ctx.Pool(min(workers, len(todo)), initializer=_init_worker)
            results = _bounded_imap(pool, todo, dataclasses.replace(job, share=True), window=2 * workers)
        else:
            results = map(_work, ((it, job) for it in todo))
        for item, frames, info, err in progress(results, total=len(todo), desc="extract", unit="video"):
            if err is not None:
                log.warning("skipped %s: %s", item.path, err)
                writer.add_error(item.key, index=item.index, source=item.path, reason=err)
                continue
            label = class_index.get(item.label, -1) if item.label is not None else -1
            _add_video(writer, item.key, frames, index=item.index, label=label, domain=item.domain,
                       fps=info["fps"], source=item.path, decoder=info["decoder"])
        if pool is not None:
            pool.close()
            pool.join()
            pool = None
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    finally:
        if pool is not None:
            pool.terminate()
    from vdgtool.stores.video import VideoStore

    # the summary describes the whole store (videos done before a --resume included)
    st = VideoStore(out)
    res.videos = len(st)
    res.frames = int(st.meta["num_frames"].sum()) if len(st) else 0
    for d in st.meta["decoder"].tolist():
        res.decoders[d] = res.decoders.get(d, 0) + 1
    res.errors = [{"key": k, "source": s, "reason": r}
                  for k, s, r in zip(st.errors.get("key", []), st.errors.get("source", []), st.errors.get("reason", []))]
    return res


def _bounded_imap(pool, todo, job: _Job, window: int):
    """Ordered results of ``_work`` over ``todo`` with at most ``window`` decoded videos in flight.

    ``Pool.imap`` would queue every task at once and let finished (decoded) videos pile up in memory
    when writing is slower than decoding; a sliding window keeps memory bounded (videos arrive encoded).
    """
    from collections import deque

    pending: deque = deque()
    it = iter(todo)
    for item in it:
        pending.append(pool.apply_async(_work, ((item, job),)))
        if len(pending) >= window:
            break
    while pending:
        res = pending.popleft().get()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.apply_async(_work, ((nxt, job),)))
        yield res
