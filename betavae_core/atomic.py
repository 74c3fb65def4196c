"""Atomic, durable writes of one file, and content hashes.

A file is written into a temporary file beside it (its name carries `TMP_MARK`, so an
interrupted write is recognised as betavae's), flushed to disk, then renamed over the
target: a reader sees the old file or the new one, never half of one. A permission
problem, a read-only file system or a full disk becomes a one-line error naming the path.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from .locking import describe_os_error, writable_error

TMP_MARK = ".betavae-tmp-"  # in the name of every temporary file betavae writes
_UMASK = os.umask(0)
os.umask(_UMASK)
_CHUNK = 1 << 20


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Write through `write(tmp_path)` into a temp file beside `path`, flush it to disk,
    then rename it over `path`: a reader sees the old file or the new one, never half."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _translated(exc, path.parent) from None
    tmp = path.parent / f".{path.name}{TMP_MARK}{secrets.token_hex(4)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 & ~_UMASK | 0o600)
        os.close(fd)
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if writable_error(exc):
            raise describe_os_error(exc, path) from None
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    """`data` into `path`, atomically."""

    def put(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            fh.write(data)

    atomic_write(path, put)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory; the rename is still atomic
    finally:
        os.close(fd)


def _translated(exc: OSError, path: Path) -> BaseException:
    return describe_os_error(exc, path) if writable_error(exc) else exc


def file_sha256(path: Path) -> str | None:
    """The SHA-256 of a regular file (None for a link, a folder or nothing)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not _is_regular(os.fstat(fh.fileno())):
            return None
        digest = hashlib.sha256()
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _is_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)
