"""Dataset manifests: a folder tree, a CSV file, or an mmaction-style list.

Every form yields :class:`Item` rows (index, key, path, class name, domain) and a class list. Class
names, not integers, travel into stores so datasets can be aligned by name later.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

from vdgtool.errors import InputError


SKIP_EXTS = (".txt", ".csv", ".json", ".md", ".npy", ".flo")


@dataclass
class Item:
    index: int
    key: str
    path: str
    label: str | None
    domain: str | None
    #: set when the input is known to be unusable before decoding (an unreadable class folder): reported, skipped
    error: str | None = None


@dataclass
class Manifest:
    items: list[Item]
    classes: list[str]
    root: str
    form: str

    def digest(self) -> str:
        """A digest of what the manifest asks for (keys, absolute paths, labels, domains, classes): a resumed
        run must read the same input, never mix two datasets in one store."""
        import hashlib
        import json

        h = hashlib.sha256(json.dumps(self.classes).encode())
        for it in self.items:
            h.update(json.dumps([it.index, it.key, os.path.abspath(it.path), it.label, it.domain]).encode(
                "utf-8", "surrogateescape"))
        return h.hexdigest()[:32]


def _norm_key(rel: str) -> str:
    """One key per file: ``a.mp4``, ``./a.mp4`` and ``x/../a.mp4`` are the same video."""
    return os.path.normpath(rel).replace(os.sep, "/") if rel else rel


def read_text_lines(path: str, what: str) -> list[str]:
    """The lines of a text manifest (UTF-8, a BOM allowed); a byte that is not UTF-8 is named by its line."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InputError(f"cannot read {what} {path} ({exc.strerror})", "check the path and its permissions") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(f"{path} line {line} is not UTF-8 text (byte 0x{data[exc.start]:02x})",
                         "save the file as UTF-8, e.g. iconv -f latin1 -t utf-8 IN > OUT") from None
    if "\0" in text:
        raise InputError(f"{path} is not a text {what} (it holds NUL bytes)",
                         "pass a folder, a CSV, an mmaction list, or a single video file")
    return text.splitlines()


def _natural_key(s: str):
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _sort_classes(names) -> list[str]:
    names = sorted(set(n for n in names if n is not None))
    if names and all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return names


def read_class_list(path: str) -> list[str]:
    """One class per line; 'index name' or 'name' forms (as the UCF-101 classInd.txt / Kinetics lists)."""
    if not os.path.isfile(path):
        raise InputError(f"class list {path} does not exist", "pass a text file with one class name per line")
    out = []
    for line in read_text_lines(path, "class list"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        out.append(parts[1] if len(parts) == 2 and parts[0].isdigit() else line)
    return out


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError as exc:
        raise InputError(f"cannot read the input folder {path} ({exc.strerror})",
                         "check its permissions (or pass a CSV / list of the videos)") from None


def from_folder(root: str, domain: str | None) -> Manifest:
    classes = sorted(d for d in _listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if not classes:
        raise InputError(f"{root} has no class sub-folders", "lay videos out as ROOT/<class>/<video>, or pass a CSV")
    items = []
    for c in classes:
        cdir = os.path.join(root, c)
        try:
            names = sorted(os.listdir(cdir), key=_natural_key)
        except OSError as exc:  # one unreadable class folder is reported and skipped, not fatal
            items.append(Item(len(items), f"{c}/", cdir, c, domain,
                              error=f"cannot read the class folder {cdir} ({exc.strerror})"))
            continue
        for name in names:
            p = os.path.join(cdir, name)
            if name.startswith("."):
                continue
            # every other file is kept, so a non-video is reported as bad input rather than ignored
            if os.path.isfile(p) and name.lower().endswith(SKIP_EXTS):
                continue
            items.append(Item(len(items), f"{c}/{name}", p, c, domain))
    return Manifest(items, classes, root, "folder")


def from_file(path: str, domain: str | None) -> Manifest:
    """A single video, GIF or image given as INPUT: a one-video store (key = the file name, no label)."""
    return Manifest([Item(0, os.path.basename(path), path, None, domain)], [], os.path.dirname(os.path.abspath(path)),
                    "file")


def from_csv(path: str, domain: str | None) -> Manifest:
    base = os.path.dirname(os.path.abspath(path))
    lines = read_text_lines(path, "CSV manifest")
    rows = []  # (line number, fields)
    try:
        reader = csv.reader(lines)
        for r in reader:
            if not r or not "".join(r).strip() or r[0].lstrip().startswith("#"):
                continue
            rows.append((reader.line_num, [c.strip() for c in r]))
    except csv.Error as exc:
        raise InputError(f"{path} line {reader.line_num}: malformed CSV ({exc})", "fix the quoting of that row") \
            from None
    if rows and rows[0][1][0].lower() in ("path", "video", "filename", "file"):
        rows = rows[1:]
    if not rows:
        raise InputError(f"{path} lists no videos", "give one 'path,label[,domain]' row per video")
    items = []
    for k, (line, r) in enumerate(rows):
        if not r[0]:
            raise InputError(f"{path} line {line}: empty path", "give 'path,label[,domain]' rows")
        if len(r) > 3:
            raise InputError(f"{path} line {line} has {len(r)} fields, not 'path,label[,domain]'",
                             "quote a path or label that holds a comma (\"a,b.mp4\")")
        p = r[0] if os.path.isabs(r[0]) else os.path.join(base, r[0])
        label = r[1] if len(r) > 1 and r[1] != "" else None
        dom = r[2] if len(r) > 2 and r[2] != "" else domain
        items.append(Item(k, _norm_key(r[0]), p, label, dom))
    return Manifest(items, _sort_classes(i.label for i in items), base, "csv")


def _split_list_line(line: str, base: str) -> tuple[str, str | None] | None:
    """(path, label) of one mmaction line, or None when it is ambiguous.

    ``path label`` (videos) or ``frame_dir total_frames label`` (raw frames); a path may hold spaces when
    the path before the last field exists as written.
    """
    parts = line.split()
    if len(parts) == 1:
        return parts[0], None
    if len(parts) == 2:
        return parts[0], parts[1]
    head, label = line.rsplit(maxsplit=1)
    head = head.strip()
    joined = os.path.exists(head if os.path.isabs(head) else os.path.join(base, head))
    frames = len(parts) == 3 and parts[1].isdigit()
    if joined and not frames:
        return head, label
    if frames and not joined:
        return parts[0], label
    return None


def from_list(path: str, domain: str | None, data_prefix: str | None = None) -> Manifest:
    """mmaction lists: 'path label' (videos) or 'frame_dir total_frames label' (raw frames); '#' comments."""
    base = data_prefix or os.path.dirname(os.path.abspath(path))
    items = []
    for n, line in enumerate(read_text_lines(path, "list file"), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        got = _split_list_line(line, base)
        if got is None:
            raise InputError(f"{path} line {n}: cannot tell the path from the label in '{' '.join(line.split())}' "
                             f"({len(line.split())} fields)",
                             "write 'path label' or 'frame_dir total_frames label'; a path with spaces must exist "
                             "as written")
        rel, label = got
        p = rel if os.path.isabs(rel) else os.path.join(base, rel)
        items.append(Item(len(items), _norm_key(rel), p, label, domain))
    if not items:
        raise InputError(f"{path} lists no videos", "give one 'path label' line per video")
    return Manifest(items, _sort_classes(i.label for i in items), base, "list")


def _is_media(path: str) -> bool:
    from vdgtool.video.decode import GIF_EXTS, IMAGE_EXTS, VIDEO_EXTS, _is_gif

    # only a regular file is sniffed: reading a pipe (a manifest on stdin) would consume it
    return path.lower().endswith(VIDEO_EXTS + GIF_EXTS + IMAGE_EXTS) or (os.path.isfile(path) and _is_gif(path))


def load_manifest(source: str, domain: str | None = None, classes_file: str | None = None,
                  data_prefix: str | None = None) -> Manifest:
    """Read a folder tree, ``.csv`` manifest or mmaction ``.txt`` list."""
    if not os.path.exists(source):
        raise InputError(f"input {source} does not exist", "pass a folder ROOT/<class>/<video>, a CSV or a list file")
    if os.path.isdir(source):
        m = from_folder(source, domain if domain is not None else os.path.basename(os.path.normpath(source)))
    elif source.lower().endswith(".csv"):
        m = from_csv(source, domain)
    elif _is_media(source):
        m = from_file(source, domain)
    else:
        m = from_list(source, domain, data_prefix)
    seen: dict[str, int] = {}
    for it in m.items:
        if it.key in seen:
            raise InputError(f"{source} lists {it.key} twice (entries {seen[it.key] + 1} and {it.index + 1})",
                             "remove the duplicate entry; every video needs a unique path")
        seen[it.key] = it.index
    if classes_file:
        names = read_class_list(classes_file)
        numeric = all(i.label is None or i.label.lstrip("-").isdigit() for i in m.items)
        for it in m.items:
            if it.label is None:
                continue
            if numeric and it.label not in names:
                j = int(it.label)
                if not 0 <= j < len(names):
                    raise InputError(f"label {j} of {it.key} is outside the {len(names)} classes of {classes_file}",
                                     "check the class list (0-based labels)")
                it.label = names[j]
            elif it.label not in names:
                raise InputError(f"class '{it.label}' of {it.key} is not in {classes_file}",
                                 "fix the manifest or the class list")
        m.classes = names
    return m


def load_manifest_stream(stream, domain: str | None = None, classes_file: str | None = None,
                         data_prefix: str | None = None, name: str = "<stdin>") -> Manifest:
    """A CSV manifest or an mmaction list read from a text stream (``vdgtool extract -``).

    The form is told from the content: CSV when the first entry has a comma, else an mmaction list.
    Relative paths are relative to ``data_prefix`` or the working directory (not to any file).
    """
    import shutil
    import tempfile

    text = stream.read()
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
    if not first:
        raise InputError(f"{name} lists no videos", "pipe one 'path,label[,domain]' or 'path label' line per video")
    base = os.path.abspath(data_prefix or os.getcwd())
    tmpdir = tempfile.mkdtemp(prefix="vdgtool-stdin-")
    tmp = os.path.join(tmpdir, "manifest.csv" if "," in first else "manifest.txt")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            m = load_manifest(tmp, domain=domain, classes_file=classes_file, data_prefix=base)
        except InputError as exc:
            raise InputError(exc.cause.replace(tmp, name), exc.remedy) from None
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    for it in m.items:  # the CSV reader resolves relative paths against the file's folder: re-base them
        if it.path.startswith(tmpdir + os.sep):
            it.path = os.path.join(base, os.path.relpath(it.path, tmpdir))
    m.root = base
    return m
