"""Writing files and folders safely: atomic writes, hashes, staged output folders that never clobber the user's,
and the one rule for "is this ours?".

**Ownership.** Every writer of ours leaves a *declaration* in what it writes: one JSON file, written last, that
says which writer wrote it and which files it wrote (an export's ``export.json``, a device bundle's
``bundle.json``, a video output's ``summary.json``, a Triton model's marker, a report's ``report.json``, a batch
prediction's ``predictions.json`` and per-image records). An :class:`Owner` tells how to read one writer's
declaration into its declared files; :func:`declared_files` applies it. A folder is that writer's
(:func:`owns_folder`) when its declaration reads and the folder holds nothing but declared files (no symbolic
link, FIFO or device), so replacing it deletes nothing of the user's; a file in a shared folder is the writer's
when a declaration there lists it (:func:`check_own_files`). Folders written by earlier versions, whose
declaration lists no files, are recognised by the owner's ``legacy`` rule. Whatever is not ours is refused in
one line, or with ``force`` moved aside (never deleted).

**Staging.** An output folder is built in a staging folder beside it (``.NAME.tmp-PID-XXXX``, marked as ours)
and moved into place only when complete. Staging folders are removed on every exit path, SIGTERM included, and
staging folders left by dead processes (SIGKILL, power loss) are removed the next time the same output is
written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import EvitError
from .limits import LIMITS

STAGING_MARKER = ".evit-deploy-staging"  # inside a staging folder: "<host> <pid>"
# errno values that mean the user's environment, not our code, stopped a write: a one-line input error
ENVIRONMENT_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                      errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                      errno.EPERM: "operation not permitted", errno.ENAMETOOLONG: "file name too long",
                      errno.ENOTDIR: "a part of the path is a file, not a folder"}


class Terminated(BaseException):
    """SIGTERM/SIGHUP arrived while an output was being written (raised so every cleanup runs)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


def environment_error(exc: OSError, doing: str) -> EvitError | None:
    """A one-line EvitError for an OSError the user can fix (full disk, read-only, permissions), else None."""
    reason = ENVIRONMENT_ERRNOS.get(exc.errno or 0)
    if reason is None:
        return None
    path = exc.filename2 or exc.filename  # for a copy, filename2 is the destination being written
    where = f" ({path})" if path else ""
    return EvitError(f"cannot {doing}: {reason}{where}")


@contextlib.contextmanager
def writing(doing: str) -> Iterator[None]:
    """Turn full-disk / read-only / permission errors inside the block into one-line EvitErrors."""
    try:
        yield
    except OSError as exc:
        error = environment_error(exc, doing)
        if error is None:
            raise
        raise error from None


def file_kind(path: str | os.PathLike) -> str:
    """What ``path`` is, without opening it (a FIFO would block): ``file`` (regular), ``missing``, or in words
    ``a folder``, ``a FIFO``, ``a socket``, ``a device``, ``a symbolic link`` (only when it cannot be followed)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return "file"
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _default_mode() -> int:
    return 0o666 & ~_umask()


def atomic_write(path: str | os.PathLike, data: bytes | str, mode: int | None = None) -> None:
    """Write ``path`` through a temporary file in the same folder and ``os.replace`` (``mode``: as ``open``
    would create it unless given). A reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, _default_mode() if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------------ output folders


def check_output_dir(output: Path, what: str = "output folder") -> Path:
    """Refuse output folders that can never be replaced: the current folder or one above it, a file."""
    resolved = output.resolve()
    cwd = Path.cwd().resolve()
    if not output.name or resolved == cwd or resolved in cwd.parents:
        raise EvitError(f"{what} {output} is the current folder or contains it; name a new folder, e.g. "
                        f"{Path('exports') / 'my-export'}")
    if output.is_symlink() or (output.exists() and not output.is_dir()):
        raise EvitError(f"{what} {output} exists and is not a folder")
    blocker = next((p for p in output.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise EvitError(f"cannot create the {what} {output}: {blocker} is a file, not a folder")
    return output



# ------------------------------------------------------------------------------------------------ ownership

Declared = Callable[[Any, str], Iterable[str] | None]


@dataclass(frozen=True)
class Owner:
    """How one writer of ours recognises what it wrote.

    ``declaration``: the JSON file the writer writes (last) into its folder. ``declared(doc, name)``: the files the
    parsed declaration ``doc`` (read from the file ``name``) says the writer wrote, as relative POSIX paths besides
    the declaration itself, or None when ``doc`` is not this writer's. ``also``: files a later command of ours may
    add (an export's signature). ``legacy(folder)``: for folders of earlier versions whose declaration lists no
    files, every file the writer wrote there (declaration included), or None. ``what``: the output, in words.
    """

    what: str
    declaration: str
    declared: Declared
    also: tuple[str, ...] = ()
    legacy: Callable[[Path], Iterable[str] | None] | None = None


def read_declaration(path: Path) -> Any:
    """The parsed JSON of a declaration file, or None when it is missing, not a regular file (a symbolic link is
    never read), larger than a manifest may be, or not JSON."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > LIMITS.max_manifest_bytes:
            return None
        return json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None


def declared_files(folder: Path, owner: Owner, declaration: str | None = None) -> set[str] | None:
    """The files ``folder`` holds that ``owner`` wrote, by its declaration (``declaration``: another file name than
    the owner's, for writers that leave one declaration per item), or None when there is none of ``owner``'s."""
    name = declaration or owner.declaration
    files = owner.declared(read_declaration(folder / name), name)
    if files is not None:
        return {name, *files, *owner.also}
    legacy = owner.legacy(folder) if owner.legacy is not None else None
    return None if legacy is None else set(legacy)


def holds_only(folder: Path, files: set[str]) -> bool:
    """Whether everything under ``folder`` is one of ``files`` (relative POSIX paths), a regular file, or a
    subfolder on the way to one; a symbolic link, FIFO, socket or device anywhere is never ours."""
    folders = {parent for f in files for parent in Path(f).parents if parent != Path(".")}
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if path.is_symlink():
            return False
        if path.is_dir() and rel in folders:
            continue
        if not path.is_file() or rel.as_posix() not in files:
            return False
    return True


def owns_folder(folder: Path, owner: Owner) -> bool:
    """True when ``folder`` is ``owner``'s output holding only the files its declaration lists (so replacing it
    deletes nothing of the user's)."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    files = declared_files(folder, owner)
    return files is not None and holds_only(folder, files)


def owned_by(owner: Owner) -> Callable[[Path], bool]:
    """:func:`owns_folder` for one owner (what :func:`replace_dir` and :func:`commit_staged` are given)."""
    return lambda folder: owns_folder(folder, owner)


def check_replaceable(output: Path, owner: Owner, force: bool = False, what: str | None = None) -> Path:
    """Refuse, before any work, an output folder that can never be replaced (:func:`check_output_dir`) or one that
    holds something and is not ``owner``'s (unless ``force``: it will be moved aside, see :func:`replace_dir`)."""
    output = check_output_dir(Path(output), what or f"{owner.what} folder")
    if output.is_dir() and any(output.iterdir()) and not owns_folder(output, owner) and not force:
        raise not_ours_error(output, owner.what)
    return output


def check_own_files(folder: Path, owner: Owner, names: Iterable[str], declarations: Iterable[str] = (),
                    owned: Iterable[str] = ()) -> None:
    """Refuse, before the work, to write ``names`` into ``folder`` (a folder others may use too: reports,
    predictions) when one of them exists and no declaration of ``owner`` there lists it, when ``folder`` is a file,
    or when the place is read-only. ``declarations``: more declaration files to read besides the owner's;
    ``owned``: files known to be ours otherwise."""
    if folder.exists() and not folder.is_dir():
        raise EvitError(f"{owner.what} folder {folder} exists and is not a folder")
    existing = [name for name in names if (folder / name).exists() or (folder / name).is_symlink()]
    if existing:
        ours = set(owned)
        for declaration in (owner.declaration, *declarations):
            ours |= declared_files(folder, owner, declaration) or set()
        theirs = next((name for name in existing if name not in ours), None)
        if theirs is not None:
            article = "an" if owner.what[0] in "aeiou" else "a"
            raise EvitError(f"refusing to overwrite {folder / theirs}: it is not {article} {owner.what} written by "
                            "evit-deploy; choose another --output folder")
    parent = next(p for p in (folder, *folder.parents) if p.exists())
    with writing(f"write the {owner.what} to {folder}"):  # a read-only place fails now, not after the work
        tempfile.TemporaryFile(dir=parent).close()


def fixed_files(files: Iterable[str], ours: Callable[[Any], bool]) -> Declared:
    """``Owner.declared`` for a writer that always writes the same ``files``: them, when ``ours(doc)``."""
    files = tuple(files)
    return lambda doc, name: files if ours(doc) else None


def declare(folder: Path, name: str, writer: str, **facts: Any) -> None:
    """Write the declaration ``folder/name`` for a writer with no manifest of its own: ``writer``, ``facts`` and
    every regular file under ``folder`` (call it last). :func:`listed_files` reads it back."""
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and not p.is_symlink() and p.name not in (name, STAGING_MARKER))
    atomic_write(folder / name, json.dumps({"writer": writer, **facts, "files": files}, indent=2) + "\n")


def listed_files(writer: str) -> Declared:
    """``Owner.declared`` for declarations written by :func:`declare` for ``writer``."""
    def declared(doc: Any, name: str) -> list[str] | None:
        if not isinstance(doc, dict) or doc.get("writer") != writer or not isinstance(doc.get("files"), list):
            return None
        files = doc["files"]
        return files if all(isinstance(f, str) for f in files) else None
    return declared


def _alive(host: str, pid: int) -> bool:
    if host != socket.gethostname():
        return True  # another machine's process (shared file system): cannot tell, leave it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(output: Path) -> list[Path]:
    """Remove staging folders of ``output`` whose process is gone (only folders carrying our marker)."""
    removed = []
    for candidate in output.parent.glob(f".{output.name}.tmp-*"):
        marker = candidate / STAGING_MARKER
        try:
            host, pid = marker.read_text().split()
            stale = candidate.is_dir() and not candidate.is_symlink() and not _alive(host, int(pid))
        except (OSError, ValueError):
            continue
        if stale:
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # turned into Terminated while an output is written
DEFERRED = (*SIGNALS, signal.SIGINT)  # held back while a folder is created, moved into place or removed


@contextlib.contextmanager
def terminate_as_exception() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP raise :class:`Terminated` (so ``finally``/``except`` cleanups
    run) instead of killing the process outright. Only the main thread can install signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGTERM, SIGHUP and SIGINT back while the block runs; one that arrived is acted on when it ends, as
    it would have been (its previous handler is called, or the default action taken).

    For the steps that must not be cut in two: creating a staging folder and marking it, moving a finished
    folder into place, removing a staging folder. Python runs signal handlers in the main thread whichever thread
    the signal reached (a signal mask would not hold it: the runtimes' worker threads take it), so the handlers
    here record the signal instead. Outside the main thread it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: arrived.append(signum)) for s in DEFERRED}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if arrived:
            _act_on(arrived[0], previous[arrived[0]])


def _act_on(signum: int, handler: object) -> None:
    """Do what ``handler`` (a previous disposition of ``signum``) does with the signal."""
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        os.kill(os.getpid(), signum)  # the default action, now that the default is back


def _entries(folder: Path) -> list[str]:
    return sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())


OwnedCheck = Callable[[Path], bool]


def replace_dir(new: Path, dest: Path, ours: OwnedCheck, force: bool = False, what: str = "folder") -> Path | None:
    """Move the finished folder ``new`` to ``dest``; returns where a previous folder was moved aside, if it was.

    An existing ``dest`` is replaced when it is empty or ``ours(dest)`` (then it is deleted: it holds only files
    we wrote). Anything else is refused with a one-line error, or with ``force`` renamed to
    ``<dest>.old-<timestamp>`` beside it and kept.
    """
    aside = None
    if dest.is_symlink() or dest.exists():
        if dest.is_dir() and not dest.is_symlink() and not any(dest.iterdir()):
            dest.rmdir()
        elif dest.is_dir() and not dest.is_symlink() and ours(dest):
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
            try:
                os.replace(new, dest)
            except BaseException:
                os.replace(old, dest)
                raise
            shutil.rmtree(old, ignore_errors=True)
            return None
        elif force:
            aside = dest.with_name(f"{dest.name}.old-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
            n = 1
            while aside.exists():
                aside, n = aside.with_name(f"{aside.name.split('~')[0]}~{n}"), n + 1
            os.replace(dest, aside)
        else:
            raise not_ours_error(dest, what)
    os.replace(new, dest)
    return aside


def not_ours_error(dest: Path, what: str) -> EvitError:
    shown = ", ".join(_entries(dest)[:4]) if dest.is_dir() and not dest.is_symlink() else "not a folder"
    more = ", ..." if dest.is_dir() and len(_entries(dest)) > 4 else ""
    return EvitError(f"refusing to replace {dest}: it is not a previous evit-deploy {what} (it holds {shown}{more});"
                     " choose another output folder, or pass --force to move it aside (nothing is deleted)")


def commit_staged(tmp: Path, output: Path, owner: Owner, force: bool = False) -> Path | None:
    """Move a finished staging folder into place; an existing ``output`` is replaced only when it is empty or
    ``owner``'s (see :func:`replace_dir`); returns where an old one went."""
    with signals_deferred(), writing(f"move {output} into place"):  # all of the move, or none of it
        (tmp / STAGING_MARKER).unlink(missing_ok=True)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp made it private (0700); give it the mode mkdir would have
        return replace_dir(tmp, output, owned_by(owner), force, owner.what)


@contextlib.contextmanager
def staged_dir(output: Path, what: str = "output folder") -> Iterator[Path]:
    """A fresh staging folder beside ``output`` (marked as ours), removed when the block exits by any path
    unless it was moved into place. SIGTERM/SIGHUP raise :class:`Terminated` from before the folder exists until
    after it is gone, and are held back while it is created and marked and while it is removed, so no signal
    leaves it behind."""
    output = check_output_dir(Path(output), what)
    parent = output.parent
    with terminate_as_exception():
        tmp = None
        try:
            with signals_deferred(), writing(f"create the {what} {output}"):
                parent.mkdir(parents=True, exist_ok=True)
                remove_stale_staging(output)
                tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-{os.getpid()}-", dir=parent))
                (tmp / STAGING_MARKER).write_text(f"{socket.gethostname()} {os.getpid()}\n")
            yield tmp
        finally:
            with signals_deferred():
                if tmp is not None and tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
