"""Exclusive output locks: one writer per output path at a time.

A writer holds an OS lock (``flock``) on ``OUTPUT.lock``, beside ``OUTPUT.partial.d`` / ``OUTPUT.partial``,
from before it touches anything until it has committed or aborted. The kernel drops the lock when the
holder exits, however it exits (``kill -9`` included), so a lock file left behind by a dead process is stale
and the next writer simply takes it. A second writer gets a one-line error naming the live holder.

On file systems without ``flock`` support the lock falls back to an exclusively created file holding the
owner's pid and host; it is stale when that pid no longer runs on this host.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time

from vdgtool.errors import StoreError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

SUFFIX = ".lock"


def lock_path(output: str) -> str:
    return os.fspath(output) + SUFFIX


def _holder_text(lockfile: str) -> str:
    try:
        with open(lockfile, encoding="utf-8", errors="replace") as f:
            info = json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return "another process"
    if not isinstance(info, dict):
        return "another process"
    desc = f"pid {info.get('pid', '?')} on {info.get('host', '?')}"
    if info.get("started"):
        desc += f", since {info['started']}"
    if info.get("command"):
        desc += f": {' '.join(str(info['command']).split())[:120]}"
    return f"another process ({desc})"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    """``with OutputLock(path):`` or ``acquire()`` / ``release()``; refuses when another process holds it."""

    def __init__(self, output: str):
        self.output = os.fspath(output)
        self.path = lock_path(self.output)
        self.fd: int | None = None
        self._owner: int | None = None  # pid that acquired it (forked children inherit, never release)

    @property
    def held(self) -> bool:
        return self.fd is not None

    def _busy(self) -> StoreError:
        return StoreError(f"{_holder_text(self.path)} is writing {self.output} (lock {self.path})",
                          "wait for it to finish or stop it; the lock is released when that process exits")

    def acquire(self) -> "OutputLock":
        if self.fd is not None:
            return self
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                folder = os.path.dirname(os.path.abspath(self.path))
                raise StoreError(f"cannot write in the output folder {folder} (creating {os.path.basename(self.path)}: "
                                 f"{exc.strerror})", "choose an -o in a folder you can write to") from None
            if fcntl is None:
                os.close(fd)
                return self._acquire_pidfile()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise self._busy() from None
                return self._acquire_pidfile()  # ENOLCK / EOPNOTSUPP: no flock on this file system
            # a holder that released (and removed the file) between our open and flock: retry on a fresh file
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd, self._owner = fd, os.getpid()
        self._write_info()
        return self

    def _acquire_pidfile(self) -> "OutputLock":
        """Fallback without flock: O_EXCL file; stale when its pid is dead on this host."""
        try:
            os.remove(self.path)  # the flock file we could not lock
        except OSError:
            pass
        self.path = lock_path(self.output) + ".pid"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    with open(self.path, encoding="utf-8") as f:
                        info = json.load(f)
                    stale = info.get("host") == socket.gethostname() and not _pid_alive(int(info.get("pid")))
                except (OSError, ValueError, TypeError, AttributeError):
                    stale = False
                if not stale:
                    raise self._busy() from None
                os.remove(self.path)
                continue
            self.fd, self._owner = fd, os.getpid()
            self._write_info()
            return self
        raise self._busy()

    def _write_info(self) -> None:
        from vdgtool.utils.provenance import command_line

        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command_line(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            os.ftruncate(self.fd, 0)
            os.write(self.fd, json.dumps(info).encode("utf-8", "backslashreplace"))
        except OSError:  # a full disk must not break locking: the lock itself is held
            pass

    def release(self) -> None:
        if self.fd is None or self._owner != os.getpid():
            return
        try:
            os.remove(self.path)  # while still holding it: a waiting writer re-checks the inode
        except OSError:
            pass
        try:
            os.close(self.fd)
        except OSError:
            pass
        self.fd = self._owner = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False

    def __del__(self):  # a writer that was never committed or aborted
        try:
            self.release()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


__all__ = ["OutputLock", "lock_path", "SUFFIX"]
