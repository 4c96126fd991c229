"""Writing outputs safely: atomic writes (synced; a failed or killed write never leaves a truncated
file), the run directory's lock, checks that a path can be written, :class:`OutputError` naming
the path."""
from __future__ import annotations

import errno
import fcntl
import os
import secrets
import sys
import time
from contextlib import contextmanager
from typing import Any, List, Optional

import torch

from . import strict_json


class OutputError(OSError):
    """Writing an output failed (read-only or full disk, a folder in the way...); the message names
    the path. The target is untouched and the temporary file removed."""

    def __init__(self, code: Optional[int], message: str):
        super().__init__(message)
        self.errno = code


def _os_reason(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


def _os_cause(e: BaseException) -> Optional[OSError]:
    """``e`` if it is an OSError, else the first OSError it was raised from or during."""
    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, OSError):
            return e
        e = e.__cause__ or e.__context__
        seen += 1
    return None


def temp_prefix(name: str) -> str:
    """Temporary files of :func:`atomic_path` for target ``name`` are ``.<name>.<random>.tmp``."""
    return "." + name + "."


def _create_temp(d: str, name: str) -> str:
    """Create an empty ``.<name>.<random>.tmp`` in ``d`` with mode 0666 less the umask (what
    ``open()`` gives a new file; ``mkstemp`` would give 0600, unreadable by the lab)."""
    while True:
        tmp = os.path.join(d, f"{temp_prefix(name)}{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def _fsync(path: str, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str):
    """The one way the package writes a file. Yields a temporary path in the target's folder; on
    success its content is flushed to disk (fsync) and it replaces ``path`` atomically (the folder
    is synced too), on an exception it is removed and ``path`` is untouched. The file gets the mode
    the umask gives a new file (0644 under umask 022). OS errors (read-only or full disk, a folder
    at ``path``) are raised as :class:`OutputError` naming ``path``."""
    d = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise OutputError(errno.EISDIR, f"cannot write {path}: it is a directory")
    try:
        os.makedirs(d, exist_ok=True)
        tmp = _create_temp(d, os.path.basename(path))
    except OSError as e:
        raise OutputError(e.errno, f"cannot write {path}: {_os_reason(e)}") from e
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        try:
            _fsync(d, directory=True)
        except OSError:
            pass   # some file systems cannot sync a folder; the rename itself is done
    except BaseException as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(e, OutputError):
            raise
        cause = _os_cause(e)   # torch.save reports a failed write as a RuntimeError around it
        if cause is not None:
            raise OutputError(cause.errno, f"cannot write {path}: {_os_reason(cause)}") from e
        raise


def remove_stale_temps(directory: str, names) -> List[str]:
    """Remove the temporary files :func:`atomic_path` left in ``directory`` for targets ``names``
    (a process killed while writing); returns the removed names. Call only while no other process
    writes there (e.g. under the run's :class:`DirLock`)."""
    removed = []
    try:
        entries = os.listdir(directory)
    except OSError:
        return removed
    prefixes = tuple(temp_prefix(n) for n in names)
    for f in entries:
        if f.endswith(".tmp") and f.startswith(prefixes):
            try:
                os.remove(os.path.join(directory, f))
                removed.append(f)
            except OSError:
                pass
    return removed


class DirBusyError(RuntimeError):
    """Another live process holds the directory's lock."""


class DirLock:
    """An exclusive lock on a directory: ``fcntl.flock`` on ``<directory>/.lock``. The kernel drops it
    when the holding process ends, however it ends, so a lock file left by a killed process is
    not in the way (only a live holder is). The lock file holds the holder's pid (for messages)
    and stays after release."""

    NAME = ".lock"

    def __init__(self, directory: str):
        self.directory = directory
        self.path = os.path.join(directory, self.NAME)
        self.fd: Optional[int] = None

    @classmethod
    def holder(cls, directory: str) -> Optional[str]:
        """The pid (as text, '?' if unknown) of a live process holding the lock, else None.
        Creates nothing."""
        path = os.path.join(directory, cls.NAME)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                except OSError:
                    pid = ""
                return pid or "?"
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def acquire(self, what: str = "directory", retry_seconds: float = 1.0) -> "DirLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OutputError(e.errno, f"cannot create the lock file {self.path}: {_os_reason(e)}") from e
        deadline = time.monotonic() + retry_seconds   # rides out another process's brief probe
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                try:
                    pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                except OSError:
                    pid = "?"
                os.close(fd)
                raise DirBusyError(f"{self.directory} is in use by another case-fast process (pid {pid}); "
                                   f"wait for it to end or choose another {what}") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass   # the pid is for messages only
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self):
        return self.acquire() if self.fd is None else self

    def __exit__(self, *exc):
        self.release()


def check_writable_path(path: str, what: str) -> None:
    """Refuse, before any work, an output ``path`` that is a directory or whose nearest existing
    ancestor is not a writable directory (read-only file system, a file in the way)."""
    if not str(path).strip():
        raise OutputError(errno.ENOENT, f"{what}: empty path")
    if os.path.isdir(path):
        raise OutputError(errno.EISDIR, f"{what} {path} is a directory, expected a file path")
    check_writable_dir(os.path.dirname(os.path.abspath(path)), what, path)


def check_writable_dir(directory: str, what: str, shown: Optional[str] = None) -> None:
    """Refuse a directory that exists as a file, or whose nearest existing ancestor is not a
    writable directory."""
    shown = shown or directory
    d = os.path.abspath(directory)
    while not os.path.exists(d):
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    if not os.path.isdir(d):
        raise OutputError(errno.ENOTDIR, f"{what} {shown}: {d} is a file, not a directory")
    if not os.access(d, os.W_OK | os.X_OK):
        reason = "read-only file system" if _read_only_fs(d) else "permission denied"
        raise OutputError(errno.EACCES, f"{what} {shown}: cannot write in {d} ({reason})")


def _read_only_fs(d: str) -> bool:
    try:
        return bool(os.statvfs(d).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def save_torch(obj: Any, path: str) -> None:
    with atomic_path(path) as tmp:
        # through a Python file: a failed write (full disk) is an OSError, not torch's RuntimeError
        with open(tmp, "wb") as f:
            torch.save(obj, f)


def save_json(obj: Any, path: str, indent: Optional[int] = 1) -> None:
    """Strict JSON (:func:`case_fast.strict_json.dumps`: NaN/Infinity refused, naming the key),
    written atomically; ``path`` '-' writes to stdout."""
    text = strict_json.dumps(obj, indent=indent, where=path)   # a failure leaves nothing behind
    if path == "-":
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        return
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def save_text(text: str, path: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
