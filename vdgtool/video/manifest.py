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


@dataclass
class Manifest:
    items: list[Item]
    classes: list[str]
    root: str
    form: str


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
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            parts = line.split(maxsplit=1)
            out.append(parts[1] if len(parts) == 2 and parts[0].isdigit() else line)
    return out


def from_folder(root: str, domain: str | None) -> Manifest:
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if not classes:
        raise InputError(f"{root} has no class sub-folders", "lay videos out as ROOT/<class>/<video>, or pass a CSV")
    items = []
    for c in classes:
        cdir = os.path.join(root, c)
        for name in sorted(os.listdir(cdir), key=_natural_key):
            p = os.path.join(cdir, name)
            if name.startswith("."):
                continue
            # every other file is kept, so a non-video is reported as bad input rather than ignored
            if os.path.isfile(p) and name.lower().endswith(SKIP_EXTS):
                continue
            items.append(Item(len(items), f"{c}/{name}", p, c, domain))
    return Manifest(items, classes, root, "folder")


def from_csv(path: str, domain: str | None) -> Manifest:
    base = os.path.dirname(os.path.abspath(path))
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        for r in reader:
            if not r or r[0].startswith("#"):
                continue
            rows.append([c.strip() for c in r])
    if rows and rows[0][0].lower() in ("path", "video", "filename", "file"):
        rows = rows[1:]
    if not rows:
        raise InputError(f"{path} lists no videos", "give one 'path,label[,domain]' row per video")
    items = []
    for k, r in enumerate(rows):
        if len(r) < 1 or not r[0]:
            raise InputError(f"{path} row {k + 2}: empty path", "give 'path,label[,domain]' rows")
        p = r[0] if os.path.isabs(r[0]) else os.path.join(base, r[0])
        label = r[1] if len(r) > 1 and r[1] != "" else None
        dom = r[2] if len(r) > 2 and r[2] != "" else domain
        items.append(Item(k, r[0], p, label, dom))
    return Manifest(items, _sort_classes(i.label for i in items), base, "csv")


def from_list(path: str, domain: str | None, data_prefix: str | None = None) -> Manifest:
    """mmaction lists: 'path label' (videos) or 'frame_dir total_frames label' (raw frames)."""
    base = data_prefix or os.path.dirname(os.path.abspath(path))
    items = []
    with open(path, encoding="utf-8") as f:
        for k, line in enumerate(f):
            parts = line.split()
            if not parts:
                continue
            if len(parts) == 2:
                rel, label = parts
            elif len(parts) >= 3:
                rel, label = parts[0], parts[-1]
            else:
                rel, label = parts[0], None
            p = rel if os.path.isabs(rel) else os.path.join(base, rel)
            items.append(Item(len(items), rel, p, label, domain))
    if not items:
        raise InputError(f"{path} lists no videos", "give one 'path label' line per video")
    return Manifest(items, _sort_classes(i.label for i in items), base, "list")


def load_manifest(source: str, domain: str | None = None, classes_file: str | None = None,
                  data_prefix: str | None = None) -> Manifest:
    """Read a folder tree, ``.csv`` manifest or mmaction ``.txt`` list."""
    if not os.path.exists(source):
        raise InputError(f"input {source} does not exist", "pass a folder ROOT/<class>/<video>, a CSV or a list file")
    if os.path.isdir(source):
        m = from_folder(source, domain if domain is not None else os.path.basename(os.path.normpath(source)))
    elif source.lower().endswith(".csv"):
        m = from_csv(source, domain)
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
