"""Crash-safe writes: every file and folder tinylm writes is filled under a
temporary name beside its final one, synced, then renamed into place, so a
reader (or the next run) sees the previous version or the new one whole,
never a half-written one. docs/reliability.md ("Crash-safe writes") lists what is tested.

Temporary names are "<final>.tmp-<pid>-<unique>", the pattern the C writers
(safetensors, the HDF5 token cache) use too. A write that fails (a full
disk, Ctrl-C) removes its temporary file; one a killed process left behind
is removed by the next write of the same name (remove_stale), once its
process is gone.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import uuid

from tinylm import _core

_TEMP = re.compile(r"^(?P<final>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]+$")
# Where a folder replaced without RENAME_EXCHANGE waits between two renames.
_OLD = ".old"


def temp_name(path: str) -> str:
    """A fresh temporary name beside path."""
    return f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale(directory: str, final: str | None = None) -> None:
    """Deletes the temporary files and folders in directory (of `final`
    only, when given) whose writing process no longer exists."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        m = _TEMP.match(name)
        if m and (final is None or m.group("final") == final) and not _alive(int(m.group("pid"))):
            path = os.path.join(directory, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


def fsync_dir(path: str) -> None:
    """Makes renames in folder path durable (best effort: some filesystems
    refuse to sync a folder, and the rename has happened either way)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# What a failed write (not a missing input) looks like: errno None is the C
# core's, whose message names the file and the reason.
_WRITE_ERRORS = {None, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}


def _failed(exc: OSError, path: str) -> OSError:
    """The error of a failed write, naming the file or folder the caller
    asked for: its temporary name, deleted by now, means nothing to a user."""
    if exc.errno is None:
        return OSError(f"cannot write {path}: {exc}")
    return OSError(exc.errno, os.strerror(exc.errno), path)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w"):
    """open() for writing ("w" text, UTF-8, or "wb") whose file appears at
    path only when the block finishes without an exception. An OSError
    (ENOSPC, EFBIG, ...) names path and leaves no temporary file."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes with mode 'w' or 'wb', not {mode!r}")
    path = os.path.abspath(os.fspath(path))
    directory, final = os.path.split(path)
    remove_stale(directory, final)
    tmp = temp_name(path)
    try:
        with open(tmp, mode.replace("w", "x"), **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _core.test_point("file:rename")
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRORS:
            raise _failed(exc, path) from None
        raise
    fsync_dir(directory)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes text (UTF-8) to path atomically, with atomic_open."""
    with atomic_open(path) as f:
        half = len(text) // 2
        f.write(text[:half])
        f.flush()
        _core.test_point("file:partial")  # half the text is in the temporary file
        f.write(text[half:])


def atomic_copy(src: str, dst: str) -> None:
    """Copies src's bytes to dst atomically."""
    with open(src, "rb") as source, atomic_open(dst, "wb") as f:
        shutil.copyfileobj(source, f)


def write_folder(final: str | os.PathLike, fill) -> None:
    """Calls fill(folder) on an empty temporary folder beside final, syncs
    every file in it, then puts it at final in one rename (replacing an
    existing folder: swapped in one step on Linux, else moved aside first).
    On any error, KeyboardInterrupt included, the temporary folder is
    removed and final is left as it was."""
    final = os.path.abspath(os.fspath(final))
    parent, name = os.path.split(final)
    os.makedirs(parent, exist_ok=True)
    remove_stale(parent, name)
    if not os.path.exists(final) and os.path.isdir(final + _OLD):
        os.rename(final + _OLD, final)  # a crash between _replace_dir's two renames: the previous folder is back
    tmp = temp_name(final)
    os.makedirs(tmp)
    try:
        fill(tmp)
        _sync_tree(tmp)
        _core.test_point("folder:rename")
        _replace_dir(tmp, final)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRORS:
            raise _failed(exc, final) from None
        raise
    fsync_dir(parent)


def remove_folder(path: str | os.PathLike) -> None:
    """Deletes a folder as one step to anyone listing its parent: renamed to
    a temporary name first, so a crash during the deletion leaves a
    temporary folder (removed by the next remove_stale), never a
    half-emptied one under its own name."""
    path = os.path.abspath(os.fspath(path))
    doomed = temp_name(path)
    os.rename(path, doomed)
    fsync_dir(os.path.dirname(path))
    _core.test_point("folder:remove")
    shutil.rmtree(doomed, ignore_errors=True)


def _sync_tree(folder: str) -> None:
    # Files written by the atomic writers are synced already; copies and
    # whatever else fill() wrote are not. Then the folder's own entries.
    for root, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(root)


def _replace_dir(src: str, dst: str) -> None:
    if not os.path.exists(dst):
        os.rename(src, dst)
        return
    if _exchange(src, dst):  # dst is the new folder now; the old one is at src
        shutil.rmtree(src, ignore_errors=True)
        return
    # rename() cannot replace a non-empty folder: move the old one aside
    # first. A crash between the two renames leaves it at dst + ".old", which
    # the next write_folder of dst puts back before anything else.
    old = dst + _OLD
    shutil.rmtree(old, ignore_errors=True)
    os.rename(dst, old)
    _core.test_point("folder:swap")
    os.rename(src, dst)
    shutil.rmtree(old, ignore_errors=True)


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
_renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)


def _exchange(a: str, b: str) -> bool:
    """Swaps two existing paths in one step (Linux renameat2 with
    RENAME_EXCHANGE); False where the C library or filesystem cannot."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, f"cannot put {a} at {b}: {os.strerror(err)}", b)
