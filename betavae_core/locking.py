"""One writer per folder: an exclusive lock on `FOLDER/.betavae/lock`.

Every command that writes into a run or output folder (train, evaluate, generate, sweep,
`SingleCellModel.save`) holds this lock while it writes. The lock is an `fcntl.flock` on
the lock file, which also records the holder's process id and command, so a second
process is refused with a message that names them. The kernel drops a flock when its
process dies, however it dies, so a lock file left behind by a killed process is simply
taken over by the next one. The file is unlinked on release (with the usual inode check
on acquisition, so a process that opened the old file never holds a stale lock).

Locks are re-entrant within one process: a nested request for a folder this process
already holds is granted at once (a sweep holds its folder while each fit locks its own).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import BetaVAEError

META_DIR = ".betavae"  # betavae's bookkeeping inside a folder: lock, manifest, staging
LOCK_NAME = "lock"

try:
    import fcntl
except ImportError:  # not POSIX: fall back to the recorded pid alone
    fcntl = None  # type: ignore[assignment]


class FolderBusyError(BetaVAEError):
    """Another live process holds the folder's lock."""


class FolderAccessError(BetaVAEError, OSError):
    """A folder cannot be written: permissions, a read-only file system or a full disk."""


_HELD: dict[str, list[Any]] = {}  # realpath -> [fd, count, lock path]


def describe_os_error(exc: OSError, path: str | Path) -> FolderAccessError:
    """One line naming the path, what the system said and the fix."""
    path = str(exc.filename or path)
    if f"/{META_DIR}/" in path:  # a staged or bookkeeping file: name the folder itself
        path = path.split(f"/{META_DIR}/")[0]
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        text = (f"cannot write {path}: permission denied. Make it writable "
                f"(chmod u+w {path}) or write elsewhere (another --out).")
    elif code == errno.EROFS:
        text = (f"cannot write {path}: it is on a read-only file system. Write elsewhere "
                f"(another --out).")
    elif code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        text = (f"no space left on the device holding {path} (disk full or quota). Free "
                f"some space or write elsewhere (another --out); nothing was half-written "
                f"(the last complete checkpoint, if any, is kept for --resume).")
    else:
        text = f"cannot write {path}: {os.strerror(code) if code else exc}."
    error = FolderAccessError(text)
    error.errno = code
    return error


def writable_error(exc: BaseException) -> bool:
    """Whether `exc` is an OSError about permissions, read-only media or free space."""
    return isinstance(exc, OSError) and not isinstance(exc, BetaVAEError) and exc.errno in (
        errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, getattr(errno, "EDQUOT", -1))


def command_line() -> str:
    """This process's command line, as the lock records it (shortened)."""
    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    text = " ".join(argv)
    return text if len(text) <= 300 else text[:297] + "..."


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


class FolderLock:
    """The exclusive lock on one folder (a context manager).

    `purpose` says what holds it (e.g. "train"); it is written into the lock file with
    the pid, host and command line, and shown to a process that is refused.
    """

    def __init__(self, folder: str | Path, purpose: str = "") -> None:
        self.folder = Path(folder)
        self.purpose = purpose
        self.path = self.folder / META_DIR / LOCK_NAME
        self.previous: dict[str, Any] | None = None  # a dead holder's record, if taken over
        self.reentered = False  # this process already held it (a nested request)
        self._key: str | None = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, or raise `FolderBusyError` naming the live holder."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            key = os.path.realpath(self.folder)
        except OSError as exc:
            raise describe_os_error(exc, self.folder) from None
        self.reentered = key in _HELD
        if self.reentered:
            _HELD[key][1] += 1
            self._key = key
            return
        try:
            fd = self._open_locked()
            self._record(fd)
        except OSError as exc:
            raise describe_os_error(exc, self.path) from None
        _HELD[key] = [fd, 1, self.path]
        self._key = key

    @property
    def key(self) -> str | None:
        """The folder's real path while the lock is held."""
        return self._key

    def release(self) -> None:
        if self._key is None:
            return
        entry = _HELD[self._key]
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[self._key]
            fd, _, path = entry
            try:
                os.unlink(path)  # while still locked: a waiter re-checks the inode
            except OSError:
                pass
            os.close(fd)
            try:
                path.parent.rmdir()  # only if nothing else of betavae's is in there
            except OSError:
                pass
        self._key = None

    def _open_locked(self) -> int:
        for _ in range(100):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
            try:
                fd = os.open(self.path, flags, 0o644)
            except FileNotFoundError:  # the folder was tidied away meanwhile: again
                continue
            if not self._try_lock(fd):
                holder = _await_record(fd)
                os.close(fd)
                raise FolderBusyError(self._busy_message(holder))
            try:
                same = os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)  # we locked a file its holder had already unlinked: again
        raise FolderBusyError(f"could not lock {self.folder}: its lock file keeps changing.")

    def _try_lock(self, fd: int) -> bool:
        if fcntl is None:
            holder = _read_record(fd)
            pid = holder.get("pid")
            return not (isinstance(pid, int) and pid != os.getpid() and pid_alive(pid))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as exc:  # a file system without flock: the recorded pid decides
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            pid = _read_record(fd).get("pid")
            return not (isinstance(pid, int) and pid != os.getpid() and pid_alive(pid))
        return True

    def _record(self, fd: int) -> None:
        old = _read_record(fd)
        if old.get("pid") not in (None, os.getpid()):
            self.previous = old  # a lock left by a process that is gone: taken over
        doc = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": self.purpose,
               "command": command_line(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        data = (json.dumps(doc) + "\n").encode()
        os.pwrite(fd, data, 0)  # overwrite first, then cut: the file is never empty
        os.ftruncate(fd, len(data))

    def _busy_message(self, holder: dict[str, Any]) -> str:
        pid = holder.get("pid", "?")
        command = holder.get("command") or holder.get("purpose") or "unknown command"
        since = f" since {holder['since']}" if holder.get("since") else ""
        host = holder.get("host")
        where = f" on {host}" if host and host != socket.gethostname() else ""
        return (f"{self.folder} is in use by process {pid}{where} ({command}){since}; "
                f"only one command may write into a folder at a time. Wait for it to "
                f"finish (or stop it), or choose another folder.")


def _parse(read: Callable[[], bytes]) -> dict[str, Any] | None:
    """The record `read` returns, or None when it is empty, unreadable or not a whole
    JSON object."""
    try:
        doc = json.loads(read().decode())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _parse_record(fd: int) -> dict[str, Any] | None:
    return _parse(lambda: os.pread(fd, 4096, 0))


def _read_record(fd: int) -> dict[str, Any]:
    return _parse_record(fd) or {}


def _await_record(fd: int, wait: float = 2.0) -> dict[str, Any]:
    """The holder's record, waiting briefly while the file is empty or half written (a
    holder that has locked but not yet written); a whole record is returned at once, with
    a pid or not (another tool's lock file)."""
    deadline = time.monotonic() + wait
    while True:
        doc = _parse_record(fd)
        if doc is not None or time.monotonic() >= deadline:
            return doc or {}
        time.sleep(0.01)


def holder(folder: str | Path) -> dict[str, Any]:
    """What the lock file of `folder` records (empty when there is none)."""
    return _parse((Path(folder) / META_DIR / LOCK_NAME).read_bytes) or {}
