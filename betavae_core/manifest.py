"""What betavae wrote in a folder, and writing there so a kill leaves the old or the new.

Ownership is decided by content, not by name. Each folder betavae writes into records,
in `FOLDER/.betavae/manifest.json`, every file it wrote there with its SHA-256. A file
is betavae's only while it is a regular file whose content still has the recorded hash;
anything else (a file the user added or edited, whatever its name, or a symbolic link)
is the user's: `--overwrite` never deletes it and never writes through a link.

Writes are staged. A command writes its files into a staging folder inside
`.betavae/`, then commits them: every staged file is hashed and flushed to disk, the
manifest records the whole set as pending (the commit point, one atomic rename), the
files are moved into place in order (the report last), and the manifest is updated.
A command killed before the commit point leaves only its staging folder, which the next
command deletes; one killed after it leaves a pending record, which the next command
completes. Every command holds the folder's lock (`locking.FolderLock`) meanwhile, and
begins with that recovery.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .atomic import TMP_MARK, file_sha256, fsync_dir, fsync_file, write_bytes
from .errors import CheckpointError, OutputExistsError
from .locking import META_DIR, FolderLock, describe_os_error, writable_error

MANIFEST = "manifest.json"
FORMAT = 1
STAGE_PREFIX = "stage-"
_OLD_TMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")

# The names a run folder had before manifests: what a folder without one is taken to
# have been written by betavae (a run of an older version, see `RunFolder._adopt`).
LEGACY_TOP = ("config.json", "model.safetensors", "history.csv", "report.json", "domain.json")
LEGACY_CHECKPOINT = ("checkpoint/last.safetensors", "checkpoint/best.safetensors",
                     "checkpoint/state.pt")


# --- the manifest ----------------------------------------------------------------------
class Manifest:
    """`files`: relative path -> SHA-256 of what betavae wrote there; `pending`: a
    commit under way (moves to finish, removals to make)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / META_DIR / MANIFEST
        self.files: dict[str, str] = {}
        self.pending: dict[str, Any] | None = None
        self.extra: dict[str, Any] = {}
        self.exists = False

    @classmethod
    def load(cls, folder: Path) -> Manifest:
        manifest = cls(folder)
        try:
            doc = json.loads(manifest.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return manifest
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{manifest.path} is unreadable ({exc}); it records which "
                                  f"files betavae wrote. Restore it, or move the folder's "
                                  f"files elsewhere and start afresh.") from None
        manifest.exists = True
        manifest.files = dict(doc.get("files", {}))
        manifest.pending = doc.get("pending")
        manifest.extra = {k: v for k, v in doc.items()
                          if k not in ("format", "files", "pending")}
        return manifest

    def save(self) -> None:
        doc = {"format": FORMAT, **self.extra, "files": dict(sorted(self.files.items())),
               "pending": self.pending}
        write_bytes(self.path, (json.dumps(doc, indent=1) + "\n").encode())
        fsync_dir(self.path.parent)
        self.exists = True

    def owns(self, rel: str, sha: str | None) -> bool:
        """Whether betavae wrote this very content at `rel`."""
        if sha is None:
            return False
        pending = (self.pending or {}).get("files", {})
        return sha in (self.files.get(rel), pending.get(rel))


# --- walking a folder without following links ------------------------------------------
def walk(folder: Path, prefix: str = "") -> Iterator[tuple[str, os.DirEntry]]:
    """(relative path, entry) of everything under `folder` but betavae's `.betavae/`
    folders; folders are entered, links never are."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name == META_DIR:
            continue
        rel = f"{prefix}{entry.name}"
        yield rel, entry
        if entry.is_dir(follow_symlinks=False):
            yield from walk(Path(entry.path), rel + "/")


def is_leftover(name: str) -> bool:
    """A temporary file of an interrupted betavae write (of this version, or of an older
    one: `.NAME.XXXXXXXX.tmp`, as `tempfile.mkstemp` named them)."""
    return TMP_MARK in name or _OLD_TMP.match(name) is not None


def visible_entries(folder: Path) -> list[str]:
    """Top-level names in `folder`, without betavae's bookkeeping and temporary files
    (what a killed command may leave; they never make a folder count as used)."""
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [n for n in names if n != META_DIR and not is_leftover(n)]


def _has_meta(path: Path) -> bool:
    """Whether `path` is a betavae folder of its own: it has a `.betavae/`, or it is a
    run folder of an older betavae (a sweep's runs)."""
    meta = path / META_DIR
    if meta.is_dir() and not meta.is_symlink():
        return True
    return _legacy_run(path)


def _legacy_run(folder: Path) -> bool:
    config = _json_or_none(folder / "config.json")
    return isinstance(config, dict) and "model" in config and "data" in config


# --- a folder betavae writes into ------------------------------------------------------
_OPEN: dict[str, RunFolder] = {}  # real path -> the folder this process holds open


class RunFolder:
    """A folder betavae writes into, held under its lock while open (a context manager).

    Opening it takes the lock, then finishes or discards what a killed command left (see
    the module docstring), and gives a folder of an older betavae a manifest. Writes go
    through `transaction()`.
    """

    def __init__(self, path: str | Path, purpose: str = "") -> None:
        self.path = Path(path)
        self.purpose = purpose
        self.lock = FolderLock(self.path, purpose)
        self.manifest = Manifest(self.path)
        self.created = False
        self._opened = 0

    def __enter__(self) -> RunFolder:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        self._opened += 1
        if self._opened > 1:
            return
        if self.path.is_symlink() and not self.path.is_dir():
            raise OutputExistsError(f"{self.path} is a symbolic link to nothing; betavae does "
                                    f"not write through it. Choose another folder.")
        if self.path.exists() and not self.path.is_dir():
            raise OutputExistsError(f"{self.path} exists and is not a directory.")
        self.created = not self.path.exists()
        try:
            self.lock.acquire()
        except BaseException:
            self._opened = 0
            raise
        if self.lock.reentered:  # this process has it open already: share its state
            outer = _OPEN.get(self.lock.key or "")
            self.manifest = outer.manifest if outer else Manifest.load(self.path)
            return
        try:
            _probe(self.path)  # a folder that cannot be written fails now, not at the end
            self.manifest = Manifest.load(self.path)
            self.recover()
            if not self.manifest.exists and adopt_legacy(self.path, self.manifest):
                self.manifest.save()
        except BaseException as exc:
            self.close(force=True)
            if writable_error(exc):
                raise describe_os_error(exc, self.path) from None
            raise
        _OPEN[self.lock.key] = self

    def close(self, force: bool = False) -> None:
        self._opened = 0 if force else self._opened - 1
        if self._opened > 0:
            return
        if not self.lock.reentered:
            _OPEN.pop(self.lock.key, None)
        self.lock.release()
        if self.created:
            try:
                self.path.rmdir()  # made by us and nothing was written: leave nothing
            except OSError:
                pass

    # --- what is in the folder --------------------------------------------------------
    def visible(self) -> list[str]:
        """Top-level names, without betavae's bookkeeping and temporary files."""
        return visible_entries(self.path)

    def unowned(self) -> list[str]:
        """Everything betavae did not write or that changed since, as 'path (why)'."""
        return _unowned(self.path, self.manifest)

    def owned(self, rel: str) -> bool:
        target = self.path / rel
        return not _through_link(self.path, rel) and self.manifest.owns(
            rel, file_sha256(target))

    def clear_owned(self) -> None:
        """Delete every file betavae wrote here (and in nested betavae folders), when
        nothing else is there; refuse, naming them, and delete nothing otherwise."""
        foreign = self.unowned()
        if foreign:
            raise OutputExistsError(
                f"refusing to overwrite {self.path}: it holds files betavae did not write "
                f"or that changed since ({_listed(foreign)}). Move them away, or choose a "
                f"new --out; nothing was deleted.")
        _clear(self.path, self.manifest)

    # --- recovery ---------------------------------------------------------------------
    def recover(self) -> None:
        """Finish a committed write, discard an uncommitted one, drop temporary files."""
        if self.manifest.pending is not None:
            self._apply_pending()
        meta = self.path / META_DIR
        if not meta.is_dir():
            return
        for entry in os.scandir(meta):
            if entry.name.startswith(STAGE_PREFIX) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            elif is_leftover(entry.name) and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
        for rel, entry in walk(self.path):  # a killed write's temporary file, anywhere
            if (is_leftover(entry.name) and entry.is_file(follow_symlinks=False)
                    and not _inside_nested(self.path, rel)):  # not another folder's
                os.unlink(entry.path)

    def _apply_pending(self) -> None:
        pending = self.manifest.pending or {}
        stage = self.path / META_DIR / pending.get("stage", "?")
        touched: set[Path] = set()
        for rel in pending.get("moves", []):
            source, target = stage / rel, self.path / rel
            if source.is_file() and not source.is_symlink():
                _check_no_link(self.path, rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
                touched.add(target.parent)
        for rel in pending.get("remove", []):
            target = self.path / rel
            if (not _through_link(self.path, rel) and rel in self.manifest.files
                    and file_sha256(target) == self.manifest.files[rel]):
                target.unlink()
                touched.add(target.parent)
                _prune_empty(target.parent, self.path)
            self.manifest.files.pop(rel, None)
        for folder in touched:
            fsync_dir(folder)
        self.manifest.files.update(pending.get("files", {}))
        self.manifest.pending = None
        self.manifest.save()
        shutil.rmtree(stage, ignore_errors=True)

    # --- writing ----------------------------------------------------------------------
    @contextmanager
    def transaction(self, last: Sequence[str] = (), replace: Sequence[str] = ()
                    ) -> Iterator[Transaction]:
        """Stage files under `txn.path`; they are committed when the block ends without
        an error and discarded otherwise. `last`: names moved into place last, in this
        order (the report); `replace`: names that may replace a file betavae does not
        own (a report the command read and merged)."""
        txn = Transaction(self, last, replace)
        try:
            yield txn
            txn.commit()
        except BaseException as exc:
            txn.discard()
            if writable_error(exc):
                raise describe_os_error(exc, self.path) from None
            raise


class Transaction:
    """Files staged for one commit into a `RunFolder` (see `RunFolder.transaction`)."""

    def __init__(self, folder: RunFolder, last: Sequence[str], replace: Sequence[str]) -> None:
        self.folder = folder
        self.name = f"{STAGE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.root = folder.path / META_DIR / self.name
        # The staged files mirror the folder; the mirror keeps the folder's own name, so a
        # generator handed `txn.path` as its output folder sees the name the user gave.
        self.path = self.root / (folder.path.name or "out")
        self.last = list(last)
        self.replace = set(replace)
        self.removals: list[str] = []
        self.known: dict[str, str] = {}
        self.committed = False
        self.path.mkdir(parents=True, exist_ok=True)

    def write_bytes(self, rel: str, data: bytes) -> str:
        """Stage `data` as `rel`; returns its SHA-256."""
        write_bytes(self.path / rel, data)
        sha = hashlib.sha256(data).hexdigest()
        self.known[rel] = sha
        return sha

    def remove(self, rel: str) -> None:
        """Delete `rel` once the new files are in place, if betavae wrote it unchanged."""
        self.removals.append(rel)

    def staged(self) -> list[str]:
        files = []
        for rel, entry in walk(self.path):
            if entry.is_symlink():
                raise OutputExistsError(f"a symbolic link was staged at {rel}; betavae "
                                        f"writes only regular files.")
            if entry.is_file(follow_symlinks=False) and not is_leftover(entry.name):
                files.append((entry.stat(follow_symlinks=False).st_mtime_ns, rel))
        order = {name: i for i, name in enumerate(self.last)}
        return [rel for _, rel in sorted(files, key=lambda f: (order.get(f[1], -1), f))]

    def commit(self) -> None:
        folder, manifest = self.folder, self.folder.manifest
        moves = self.staged()
        hashes = {}
        for rel in moves:
            if rel not in self.known:  # written by a plugin: make sure it is on disk
                fsync_file(self.path / rel)
            hashes[rel] = self.known.get(rel) or file_sha256(self.path / rel)
        self._check_targets(moves)
        manifest.pending = {"stage": f"{self.name}/{self.path.name}", "moves": moves,
                            "remove": [r for r in self.removals if r not in hashes],
                            "files": hashes}
        manifest.save()  # the commit point: from here on, recovery completes it
        self.committed = True
        folder._apply_pending()
        shutil.rmtree(self.root, ignore_errors=True)

    def discard(self) -> None:
        """Drop the staged files, unless committed (recovery then finishes the moves)."""
        if not self.committed:
            shutil.rmtree(self.root, ignore_errors=True)

    def _check_targets(self, moves: list[str]) -> None:
        """Refuse to replace what betavae does not own; make sure every target folder
        can be written (before the commit point, so a refusal leaves the old files)."""
        folder = self.folder
        foreign = []
        for rel in moves:
            target = folder.path / rel
            if _through_link(folder.path, rel):
                foreign.append(f"{rel} (inside a symbolic link)")
            elif target.is_symlink():
                foreign.append(f"{rel} (a symbolic link)")
            elif target.is_dir():
                foreign.append(f"{rel} (a folder)")
            elif target.exists() and rel not in self.replace and not folder.owned(rel):
                foreign.append(f"{rel} ({_why(folder.manifest, rel)})")
        if foreign:
            raise OutputExistsError(
                f"not writing into {folder.path}: it already holds {_listed(foreign)}, "
                f"which betavae did not write, so it is kept. Move it away, or choose "
                f"another folder.")
        for parent in sorted({(folder.path / rel).parent for rel in moves}):
            _probe(parent)


@contextmanager
def output_folder(path: str | Path, *, overwrite: bool = False, update: bool = False,
                  purpose: str = "") -> Iterator[Path]:
    """Write files into the folder `path` all at once, under its lock.

    Yields a staging folder: write the files there (as you would into `path`). When the
    block ends without an error they are moved into `path` and recorded in its manifest;
    after an error or a kill, `path` holds its old content only. A folder that is not
    empty is refused, unless `update` (add or replace betavae's own files; a user's file
    of the same name is never replaced) or `overwrite` (first delete every file betavae
    wrote there; refused, naming them, if it holds anything else).
    """
    with RunFolder(path, purpose) as folder:
        contents = folder.visible()
        if contents and not (overwrite or update):
            raise OutputExistsError(
                f"{folder.path} is not empty ({_listed(contents)}); choose a new folder, "
                f"or allow replacing what betavae wrote there (overwrite=True, --overwrite).")
        if overwrite and contents:
            folder.clear_owned()
        with folder.transaction() as txn:
            yield txn.path


# --- helpers ---------------------------------------------------------------------------
def adopt_legacy(folder: Path, manifest: Manifest) -> bool:
    """A run folder an older betavae wrote (a config.json, no manifest): its files with
    the names betavae used then are taken to be betavae's, as they were then; figures
    count only if its report.json lists them. Returns whether it was such a folder."""
    if not _legacy_run(folder):
        return False
    report = _json_or_none(folder / "report.json")
    plots = []
    if isinstance(report, dict) and isinstance(report.get("evaluation"), dict):
        plots.append("plots/history.png")
        for entry in report["evaluation"].get("results", {}).values():
            if isinstance(entry, dict):
                plots += [f for f in entry.get("figures", []) if isinstance(f, str)]
    for rel in (*LEGACY_TOP, *LEGACY_CHECKPOINT, *plots):
        sha = None if _through_link(folder, rel) else file_sha256(folder / rel)
        if sha is not None:
            manifest.files[rel] = sha
    manifest.extra["adopted"] = "files of a run folder written before manifests"
    return True


def _folder_manifest(folder: Path) -> Manifest:
    """The manifest of a nested betavae folder (that of an older run, if it has none)."""
    manifest = Manifest.load(folder)
    if not manifest.exists:
        adopt_legacy(folder, manifest)
    return manifest


def _unowned(folder: Path, manifest: Manifest, prefix: str = "") -> list[str]:
    out = []
    for rel, entry in walk(folder):
        if _inside_nested(folder, rel):
            continue
        if entry.is_symlink():
            out.append(f"{prefix}{rel} (a symbolic link)")
        elif entry.is_dir(follow_symlinks=False) or is_leftover(entry.name):
            continue
        elif not manifest.owns(rel, file_sha256(Path(entry.path))):
            out.append(f"{prefix}{rel} ({_why(manifest, rel)})")
    for nested in _nested(folder):
        out += _unowned(folder / nested, _folder_manifest(folder / nested), f"{prefix}{nested}/")
    return out


def _nested(folder: Path) -> list[str]:
    """Sub-folders that are betavae folders of their own (a sweep's runs)."""
    return [rel for rel, entry in walk(folder)
            if entry.is_dir(follow_symlinks=False) and _has_meta(Path(entry.path))
            and not _inside_nested(folder, rel)]


def _inside_nested(folder: Path, rel: str) -> bool:
    parts = rel.split("/")
    return any(_has_meta(folder.joinpath(*parts[:i])) for i in range(1, len(parts)))


def _why(manifest: Manifest, rel: str) -> str:
    return ("changed since betavae wrote it" if rel in manifest.files
            else "not written by betavae")


def _clear(folder: Path, manifest: Manifest) -> None:
    for nested in _nested(folder):
        with RunFolder(folder / nested, "overwrite") as inner:  # finishes what it left
            _clear(inner.path, inner.manifest)
    for rel in sorted(manifest.files, key=lambda r: -r.count("/")):
        target = folder / rel
        if not _through_link(folder, rel) and file_sha256(target) == manifest.files[rel]:
            target.unlink()
            _prune_empty(target.parent, folder)
    for _rel, entry in sorted(walk(folder), reverse=True):  # its temporaries too
        if is_leftover(entry.name) and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)
        elif entry.is_dir(follow_symlinks=False):
            _prune_empty(Path(entry.path), folder)
    manifest.files = {}
    manifest.extra = {}  # a new fit here is a new run (a new run id)
    manifest.path.unlink(missing_ok=True)  # an empty folder again (the next write makes one)
    manifest.exists = False


def _prune_empty(folder: Path, root: Path) -> None:
    """Remove now-empty folders from `folder` up to (not including) `root`."""
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _through_link(root: Path, rel: str) -> bool:
    """Whether a folder on the way from `root` to `rel` is a symbolic link."""
    parts = rel.split("/")[:-1]
    current = root
    for part in parts:
        current = current / part
        if current.is_symlink():
            return True
    return False


def _check_no_link(root: Path, rel: str) -> None:
    if _through_link(root, rel) or (root / rel).is_symlink():
        raise OutputExistsError(f"{root / rel} is or lies inside a symbolic link; betavae "
                                f"never writes through links. Remove the link.")


def _probe(folder: Path) -> None:
    """Create the folder and check a file can be made in it (raises the OSError)."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".probe{TMP_MARK}{secrets.token_hex(4)}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    os.unlink(probe)


def _listed(items: Sequence[str], limit: int = 8) -> str:
    return ", ".join(items[:limit]) + (f", ... ({len(items)} in all)" if len(items) > limit
                                       else "")


def _json_or_none(path: Path) -> Any:
    if path.is_symlink():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
