"""Committing a finished build to its output, so that readers see all of it or none of it.

Local disk: the build is written in a staging directory next to the output,
``.NAME.grouparrow-tmp-<id>/``, the manifest last; the directory is then renamed into place.
With ``mode="overwrite"`` the staging directory and the old output are swapped in one atomic
step (Linux ``renameat2(RENAME_EXCHANGE)``, macOS ``renamex_np(RENAME_SWAP)``), so that the
output path always holds a whole dataset, and the old one, now under the staging name, is
deleted after. Where the system or filesystem cannot swap, the old output is renamed to
``.NAME.grouparrow-old-<id>/`` and the staging directory into place: a process killed
between the two renames leaves no output, and :func:`grouparrow.gc.recover` (which every
build and ``grouparrow gc`` runs first) renames the old one back.

Who may delete what: a build holds an exclusive ``flock`` on the owner file
(:data:`OWNER`: pid, host, start time) in its staging directory for as long as it runs (the
kernel drops it when the process dies, SIGKILL included), and creates, publishes and
inspects staging directories only under an exclusive ``flock`` of the output's parent
directory (:func:`parent_lock`), so that :func:`grouparrow.gc.gc` never sees a build half
way through a step. A staging directory whose owner file is not locked, or that has none,
is a dead build's and may be deleted.

Object stores have no rename: the build's files are uploaded under a prefix of their own
(``<output>/build-<UTC time>-<8 hex>/``) and the manifest, which lists them, is written last
at ``<output>/grouparrow.json``: the manifest is the commit point, and readers trust only
what it lists. A failed upload deletes its prefix; ``mode="overwrite"`` deletes the replaced
manifest's prefix once the new manifest is written; with ``mode="error"`` the manifest is
written only if none exists (a conditional put where the store has one). A killed build
leaves its prefix, which :func:`grouparrow.gc.gc` deletes once it is older than a grace
period (an object store has no locks to tell a running build). Its local scratch directory
(``grouparrow-build-*`` under the temp directory: the index before upload, spool and spill
files) is owned and locked as a local staging directory is, its owner file naming the
output; ``grouparrow gc OUTPUT`` and every later successful build to that output delete
it once its lock is free.

Example:
    >>> import tempfile
    >>> from grouparrow.storage import Storage
    >>> check_output(Storage.at(tempfile.mkdtemp() + "/new"), "error")
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import functools
import json
import os
import re
import shutil
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from grouparrow import _faults
from grouparrow.errors import FormatError, OutputExistsError
from grouparrow.format import MANIFEST, Manifest, read_manifest, seal, write_manifest
from grouparrow.storage import Storage


def check_output(out: Storage, mode: str) -> None:
    """Refuse an output that exists (``mode="error"``) or is not a dataset."""
    if not out.local:
        _check_remote_output(out, mode)
        return
    path = out.root_path
    if path.is_file():
        raise OutputExistsError(f"output {str(path)!r} is a file; give a directory path")
    if not path.is_dir() or not any(path.iterdir()):
        return
    if mode == "error":
        raise OutputExistsError(
            f"output {str(path)!r} already exists; pass mode='overwrite' to replace it "
            "(grouparrow build --overwrite), or choose another path"
        )
    if not (path / MANIFEST).exists():
        raise OutputExistsError(
            f"refusing to overwrite {str(path)!r}: it is not a grouparrow dataset (it has no "
            f"{MANIFEST}); remove it yourself or choose another path"
        )


#: The name of a staging directory is ``.<output name>`` + this + ``<id>``.
TMP_INFIX = ".grouparrow-tmp-"
#: ... and that of an old output moved aside by a two-rename overwrite, the same ``<id>``.
OLD_INFIX = ".grouparrow-old-"
#: The owner file of a running build, in its staging directory (never in a dataset).
OWNER = ".grouparrow-owner.json"
#: Whether an overwrite may swap directories atomically; tests turn it off to check the
#: two-rename protocol that systems without a swap use.
EXCHANGE = True


@dataclasses.dataclass
class Staging:
    """A build's staging directory (or an object-store build's local scratch directory),
    and the locked owner file that marks the build alive (``lock`` is ``None`` once
    :meth:`close` dropped it)."""

    path: Path
    lock: int | None = None

    def close(self) -> None:
        """Drop the lock (the directory is then a dead build's unless committed)."""
        if self.lock is not None:
            os.close(self.lock)
            self.lock = None


#: The name of an object-store build's local scratch directory (under the temp directory)
#: starts with this; its owner file names the output (``"output"``).
SCRATCH_PREFIX = "grouparrow-build-"


def staging_directory(out: Storage, temp_directory: str | os.PathLike[str] | None) -> Staging:
    """A new local directory to build in, owned and locked by this process (:data:`OWNER`):
    next to a local output (so that it can be renamed into place); for an object-store
    output, ``grouparrow-build-*`` under ``temp_directory`` (default: the system's), whose
    owner file also names the output (so that ``grouparrow gc OUTPUT`` finds it once the
    build is dead)."""
    if out.local:
        path = out.root_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}{TMP_INFIX}{uuid.uuid4().hex[:12]}"
        output = None
    else:
        import tempfile

        parent = Path(temp_directory if temp_directory is not None else tempfile.gettempdir())
        tmp = parent / f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:12]}"
        output = out.uri
    with parent_lock(tmp.parent):  # gc never sees it without its owner file
        tmp.mkdir(mode=0o700 if output else 0o777)
        try:
            return Staging(tmp, _own(tmp, output))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def scratch_output(tmp: Path) -> str | None:
    """The output URI an object-store build's scratch directory ``tmp`` was made for
    (``None``: no owner file, or one that cannot be read)."""
    try:
        owner = json.loads((tmp / OWNER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    output = owner.get("output") if isinstance(owner, dict) else None
    return output if isinstance(output, str) else None


def _own(tmp: Path, output: str | None = None) -> int:
    """Write and lock ``tmp``'s owner file (``output``: the output URI an object-store
    build's scratch is for); the locked descriptor."""
    fd = os.open(tmp / OWNER, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with contextlib.suppress(OSError, ImportError):  # no locks: the pid and host tell
            _flock(fd, blocking=False)
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "process_start": _process_start(os.getpid()),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **({"output": output} if output is not None else {}),
        }
        os.write(fd, json.dumps(owner).encode("utf-8"))
    except BaseException:
        os.close(fd)
        raise
    return fd


def owner_alive(tmp: Path) -> bool | None:
    """Whether the build staging in ``tmp`` is running: ``False`` when its owner file is
    missing or unlocked (its process died, or it never got that far), ``True`` when it is
    locked; where the filesystem has no locks, whether its pid lives on this host
    (``None``, unknown, for another host's)."""
    try:
        fd = os.open(tmp / OWNER, os.O_RDWR)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:  # another user's build: its pid and host tell
        return _pid_alive(tmp / OWNER)
    try:
        try:
            _flock(fd, blocking=False)
        except BlockingIOError:
            return True
        except (OSError, ImportError):  # no locks on this filesystem or system
            return _pid_alive(tmp / OWNER)
        return False
    finally:
        os.close(fd)  # drops the lock taken to test it


def _pid_alive(owner_file: Path) -> bool | None:
    """Whether the owner file's process lives (``None``: cannot tell)."""
    try:
        owner = json.loads(owner_file.read_text(encoding="utf-8"))
        pid, host = int(owner["pid"]), str(owner["host"])
    except FileNotFoundError:
        return False
    except OSError:
        return None
    except (ValueError, KeyError, TypeError):
        return False  # killed while writing it (it is written under the parent's lock)
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    start = owner.get("process_start")
    return start is None or _process_start(pid) in (None, start)


def _process_start(pid: int) -> int | None:
    """The start time of process ``pid`` (Linux: clock ticks since boot), to tell a reused
    pid; ``None`` where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _flock(fd: int, *, blocking: bool) -> None:
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))


@contextlib.contextmanager
def parent_lock(parent: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` of the directory ``parent`` (where outputs and their
    staging directories live) for a short step: creating a staging directory, publishing
    one, or inspecting and recovering them (:mod:`grouparrow.gc`). Where the filesystem or
    system has no such lock (some network filesystems; Windows), the step runs unlocked.

    Example:
        >>> import tempfile
        >>> with parent_lock(Path(tempfile.mkdtemp())):
        ...     pass
    """
    try:
        fd = os.open(parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError, ImportError):
            _flock(fd, blocking=True)
        yield
    finally:
        os.close(fd)  # drops the lock


def commit(
    tmp: Path, out: Storage, manifest: Manifest, mode: str, *, uploaded: str | None = None
) -> None:
    """Publish the finished build in ``tmp`` (shards and index written, no manifest yet).

    ``uploaded``: for an object-store output, the build prefix (:func:`new_build_id`) its
    files were written to already (by the tasks of a distributed build); then only the
    manifest is written."""
    if not out.local:
        _commit_remote(tmp, out, manifest, mode, uploaded)
        return
    _faults.point("commit:manifest-before")
    write_manifest(tmp, manifest)
    _faults.point("commit:manifest-written")
    path = out.root_path
    replaced: Path | None = None
    with parent_lock(path.parent):
        with contextlib.suppress(FileNotFoundError):
            (tmp / OWNER).unlink()  # the lock stays held (on the open file) till the build ends
        if mode == "overwrite" and _non_empty_dir(path):
            replaced = _replace(tmp, path)
        else:
            try:
                os.rename(tmp, path)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                if mode != "overwrite":
                    raise OutputExistsError(
                        f"output {str(path)!r} was created by someone else during the build; "
                        "pass mode='overwrite' to replace it"
                    ) from exc
                replaced = _replace(tmp, path)  # another build published it just now
        fsync_directory(path.parent)
    _faults.point("commit:published")
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)
    _faults.point("commit:done")


def _non_empty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def _replace(tmp: Path, path: Path) -> Path:
    """Put the directory ``tmp`` at ``path`` in place of the one there; returns where the
    old one is now (to delete). One atomic swap where the system can; else two renames."""
    if exchange(tmp, path):
        return tmp
    old = path.parent / f".{path.name}{OLD_INFIX}{tmp.name.rsplit(TMP_INFIX, 1)[1]}"
    os.rename(path, old)
    _faults.point("commit:moved-aside")
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old, path)
        raise
    return old


def exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` (both exist) in one atomic step; ``False`` where this
    system or filesystem cannot (nothing was changed then).

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); (d / "a").mkdir(); _ = (d / "b").write_text("b")
        >>> swapped = exchange(d / "a", d / "b")
        >>> (d / "a").is_file() == swapped
        True
    """
    swap = _swap_function() if EXCHANGE else None
    if swap is None:
        return False
    if swap(os.fsencode(a), os.fsencode(b)) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(error, os.strerror(error), str(a), None, str(b))


@functools.cache
def _swap_function() -> Callable[[bytes, bytes], int] | None:
    """The C library's atomic swap of two paths, if it has one."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if sys.platform.startswith("linux"):
            renameat2 = libc.renameat2  # glibc 2.28+, musl 1.2.2+
            renameat2.argtypes = [
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_uint,
            ]
            renameat2.restype = ctypes.c_int
            at_fdcwd, rename_exchange = -100, 2

            def linux(a: bytes, b: bytes) -> int:
                return int(renameat2(at_fdcwd, a, at_fdcwd, b, rename_exchange))

            return linux
        if sys.platform == "darwin":
            renamex_np = libc.renamex_np
            renamex_np.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
            renamex_np.restype = ctypes.c_int

            def darwin(a: bytes, b: bytes) -> int:
                return int(renamex_np(a, b, 2))  # RENAME_SWAP

            return darwin
    except (AttributeError, OSError):
        pass
    return None


def fsync_directory(path: Path) -> None:
    """Make the renames in ``path`` durable (where the system allows)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


#: A remote build's prefix: ``build-<UTC time>-<8 hex digits>``.
BUILD_PREFIX = re.compile(r"build-\d{8}T\d{6}Z-[0-9a-f]{8}")


def new_build_id() -> str:
    """A fresh name for a remote build's prefix: ``build-20261124T180000Z-1a2b3c4d``
    (sortable by time; unique across concurrent builds).

    Example:
        >>> bool(BUILD_PREFIX.fullmatch(new_build_id()))
        True
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"build-{stamp}-{uuid.uuid4().hex[:8]}"


def _check_remote_output(out: Storage, mode: str) -> None:
    """An object-store output: a dataset (a manifest) is refused with ``mode="error"``;
    anything there but a manifest and build prefixes (``build-*/``, left by builds that
    failed or are running) is refused as not a dataset."""
    if out.is_file():
        raise OutputExistsError(f"output {out.uri!r} is a file; give a directory (prefix) URI")
    names = out.entries()
    if MANIFEST in names:
        if mode == "error":
            raise OutputExistsError(
                f"output {out.uri!r} already exists; pass mode='overwrite' to replace it "
                "(grouparrow build --overwrite), or choose another path"
            )
        return
    others = [n for n in names if not BUILD_PREFIX.fullmatch(n)]
    if others:
        shown = ", ".join(repr(n) for n in others[:5]) + (", ..." if len(others) > 5 else "")
        raise OutputExistsError(
            f"refusing to write to {out.uri!r}: it is not a grouparrow dataset (it has no "
            f"{MANIFEST}) and holds other things ({shown}); remove them yourself or choose "
            "another path"
        )


def _commit_remote(
    tmp: Path, out: Storage, manifest: Manifest, mode: str, uploaded: str | None = None
) -> None:
    """Upload the build in ``tmp`` under ``<output>/<build id>/`` (unless it is ``uploaded``
    there already), then write the manifest, which lists those files, at
    ``<output>/grouparrow.json``: the commit point. With ``mode="overwrite"`` the files of
    the manifest replaced are deleted after (its build prefix; never another's: a build may
    be running there). ``tmp`` is removed."""
    build_id = uploaded or new_build_id()
    files = [manifest.index, *(s.file for s in manifest.shards)]
    where = out.child(build_id) if uploaded else None
    missing = [
        f for f in files if not (where.is_file(f) if where is not None else (tmp / f).is_file())
    ]
    if missing:
        raise FileNotFoundError(
            f"the build in {where.uri if where is not None else tmp} lacks {missing}; "
            "nothing was committed"
        )
    # The index's and the shards' tail checksums, from the files (local ones when here).
    manifest = seal(manifest, where if where is not None else Storage.at(tmp))
    published = dataclasses.replace(
        manifest,
        index=f"{build_id}/{manifest.index}",
        shards=tuple(dataclasses.replace(s, file=f"{build_id}/{s.file}") for s in manifest.shards),
    )
    body = published.to_json().encode("utf-8")
    try:
        if not uploaded:
            out.put_files([(tmp / f, f"{build_id}/{f}") for f in files])
        _faults.point("remote:uploaded")
        previous = _current_manifest(out) if mode == "overwrite" else None
        try:
            out.write_bytes(MANIFEST, body, exclusive=mode != "overwrite")
        except FileExistsError:
            raise OutputExistsError(
                f"output {out.uri!r} was created by someone else during the build; pass "
                "mode='overwrite' to replace it"
            ) from None
    except BaseException:
        if not _committed(out, body):
            with contextlib.suppress(Exception):
                out.delete(build_id)
        raise
    _faults.point("remote:committed")
    shutil.rmtree(tmp, ignore_errors=True)
    if previous is not None:
        with contextlib.suppress(Exception):  # committed: leftovers are only wasted space
            _delete_files_of(out, previous, keep=build_id)
    with contextlib.suppress(Exception):  # as a local build runs gc on its output
        from grouparrow.gc import gc_scratch

        gc_scratch(out, tmp.parent)  # the local scratch that killed builds to `out` left
    _faults.point("remote:done")


def _committed(out: Storage, body: bytes) -> bool:
    """Whether the manifest at ``out`` may be ``body`` (a put that failed on the way back
    may have been stored): the upload is deleted only when the manifest is known to be
    another one, or absent."""
    try:
        return out.read_bytes(MANIFEST) == body
    except FileNotFoundError:
        return False
    except Exception:  # cannot tell: keep the files rather than break a dataset
        return True


def _current_manifest(out: Storage) -> Manifest | None:
    """The manifest now at ``out`` (``None`` if none, or one that cannot be read: its files
    are then left alone)."""
    try:
        return read_manifest(out)
    except (FileNotFoundError, FormatError):
        return None


def _delete_files_of(out: Storage, old: Manifest, keep: str) -> None:
    """Delete what the replaced manifest ``old`` listed: its build prefix when all its files
    are under one (``build-*/``), else (a dataset laid out as a local one) just its files."""
    files = [old.index, *(s.file for s in old.shards)]
    prefixes = {f.split("/", 1)[0] for f in files}
    if len(prefixes) == 1 and all("/" in f for f in files):
        prefix = prefixes.pop()
        if BUILD_PREFIX.fullmatch(prefix) and prefix != keep:
            out.delete(prefix)
            return
    for file in files:
        if not file.startswith(f"{keep}/"):
            out.delete(file)
