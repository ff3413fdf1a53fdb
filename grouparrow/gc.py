"""Removing what interrupted builds left beside an output, and recovering an interrupted
overwrite: ``grouparrow gc PATH`` and :func:`grouparrow.gc`.

A build killed before it committed (SIGKILL, power loss, an OOM kill) leaves its staging
directory ``.NAME.grouparrow-tmp-<id>/`` next to the output ``NAME``; one killed just after
an overwrite swapped the datasets leaves the old dataset there under that name; on systems
without an atomic swap, an overwrite killed between its two renames leaves the old output
as ``.NAME.grouparrow-old-<id>/`` and no ``NAME``. The previous dataset, if any, is never
damaged by any of these (see :mod:`grouparrow._commit`), and ``ga.open`` never sees a partial
one: only disk space is lost, and :func:`gc` gets it back.

- **Local outputs.** A staging directory belongs to a running build while that build holds
  the lock of its owner file (``.grouparrow-owner.json``: pid, host, start time); the kernel
  drops the lock when the process dies, however it dies. :func:`gc` deletes every staging
  directory whose lock is free (or that has no owner file), and every old output moved
  aside, once :func:`recover` has put an interrupted overwrite's old output back. Where the
  filesystem has no locks, a build whose pid lives on this host is kept, and one of another
  host is kept until it is ``grace`` seconds old. Every successful build runs :func:`gc` on
  its output, so leftovers last until the next build to the same output, or ``grouparrow
  gc``.
- **Object stores** (``s3://``, ...). A killed build leaves its ``build-<UTC time>-<id>/``
  prefix, which the manifest does not list. An object store has no locks, so a prefix the
  manifest does not list is deleted only once it is ``grace`` seconds old (default one
  day; the time is in its name): a build running now is never deleted unless it started
  more than ``grace`` ago. Pass ``grace=0`` when no build to that output is running.
  It also leaves its local scratch directory, ``grouparrow-build-*`` under the temp
  directory (``temp_directory=`` of the build; default the system's), which is owned and
  locked as a local staging directory is, its owner file naming the output: :func:`gc`
  deletes those of builds to that output whose lock is free (pass the build's
  ``temp_directory``), at once: a lock tells a dead build. Every successful object-store
  build does the same for its output and temp directory (:func:`gc_scratch`), as a local
  build runs :func:`gc`.
- **Ray builds** (``engine="ray"``). A killed driver leaves what a local-engine build
  leaves: its staging directory next to a local output (the tasks' ``_map`` files in it),
  or its build prefix (with the ``_map`` files) and local scratch directory for an
  object-store output; :func:`gc` deletes them the same way. The local Ray instance the
  driver started dies with it, but a task in hand may run on for a second or two: a
  staging directory it makes again after :func:`gc` deleted it has no owner file, and the
  next :func:`gc` deletes it.

Example:
    >>> import grouparrow as ga, pyarrow as pa, tempfile
    >>> out = tempfile.mkdtemp() + "/ds"
    >>> _ = ga.build(pa.table({"u": ["a", "b"]}), key="u", output=out)
    >>> ga.gc(out)
    []
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from grouparrow._commit import (
    BUILD_PREFIX,
    OLD_INFIX,
    SCRATCH_PREFIX,
    TMP_INFIX,
    fsync_directory,
    owner_alive,
    parent_lock,
    scratch_output,
)
from grouparrow.format import MANIFEST, read_manifest
from grouparrow.storage import Storage, is_uri

#: Seconds after which a leftover whose build cannot be known dead is deleted anyway: an
#: object store's ``build-*`` prefix, a staging directory of another host without locks.
DEFAULT_GRACE = 24 * 3600.0


def gc(
    path: str | os.PathLike[str],
    *,
    dry_run: bool = False,
    grace: float = DEFAULT_GRACE,
    storage_options: Mapping[str, Any] | None = None,
    temp_directory: str | os.PathLike[str] | None = None,
) -> list[str]:
    """Delete what interrupted builds left beside the output ``path`` (a directory or a URI;
    it may not exist): staging directories of builds that are not running, old outputs
    moved aside, and, on object stores, ``build-*`` prefixes the manifest does not list that
    are older than ``grace`` seconds, and the local scratch directories
    (``grouparrow-build-*`` under ``temp_directory``, default the system's temp directory)
    of builds to that output that are not running (:func:`gc_scratch`). An overwrite
    interrupted between its two renames is first undone (:func:`recover`). Returns the
    paths (URIs) deleted, or, with ``dry_run``, that would be (then nothing is changed).

    The dataset at ``path`` is never touched, nor is a build that is running.

    Example:
        >>> import grouparrow as ga, tempfile
        >>> ga.gc(tempfile.mkdtemp() + "/never-built", dry_run=True)
        []
    """
    if grace < 0:
        raise ValueError(f"grace={grace!r} must be a number of seconds >= 0")
    out = Storage.at(path, storage_options if is_uri(path) else None)
    if not out.local:
        prefixes = _gc_remote(out, dry_run, grace)
        return prefixes + gc_scratch(out, temp_directory, dry_run=dry_run)
    target = out.root_path
    if not target.parent.is_dir():
        return []
    with parent_lock(target.parent):
        if not dry_run:
            _recover(target)
        garbage = [p for p in _leftovers(target) if _is_garbage(p, target, grace)]
    if not dry_run:  # dead builds stay dead: deleting needs no lock
        for leftover in garbage:
            _delete(leftover)
    return [str(p) for p in garbage]


def recover(
    path: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> str | None:
    """Undo an overwrite of the local output ``path`` that was killed between its two
    renames (only on systems without an atomic swap of directories): when ``path`` is
    missing, the old output moved aside (``.NAME.grouparrow-old-<id>``) and the new one
    (``.NAME.grouparrow-tmp-<id>``) both exist, the old one is renamed back. Returns the
    directory it was restored from, or ``None`` when there was nothing to do (always, for
    an object store, whose commit is one put). Every build and :func:`gc` run it first.

    Example:
        >>> import tempfile
        >>> recover(tempfile.mkdtemp() + "/ds") is None
        True
    """
    out = Storage.at(path, storage_options if is_uri(path) else None)
    if not out.local or not out.root_path.parent.is_dir():
        return None
    with parent_lock(out.root_path.parent):
        return _recover(out.root_path)


def _recover(target: Path) -> str | None:
    """:func:`recover`, with the parent's lock held."""
    if os.path.lexists(target):
        return None
    for old in _leftovers(target, OLD_INFIX):
        if _interrupted(old, target) and (old / MANIFEST).is_file():
            os.rename(old, target)
            fsync_directory(target.parent)
            return str(old)
    return None


def _interrupted(old: Path, target: Path) -> bool:
    """Whether ``old`` is the output an overwrite moved aside before dying: the output is
    missing and the overwrite's staging directory (same id) is still there."""
    ident = old.name[len(f".{target.name}{OLD_INFIX}") :]
    tmp = target.parent / f".{target.name}{TMP_INFIX}{ident}"
    return not os.path.lexists(target) and tmp.is_dir()


def _leftovers(target: Path, *infixes: str) -> list[Path]:
    """The staging and moved-aside directories of the output ``target``, by name."""
    prefixes = tuple(f".{target.name}{infix}" for infix in infixes or (TMP_INFIX, OLD_INFIX))
    try:
        names = sorted(os.listdir(target.parent))
    except FileNotFoundError:
        return []
    return [target.parent / n for n in names if n.startswith(prefixes)]


def _is_garbage(leftover: Path, target: Path, grace: float) -> bool:
    if leftover.name.startswith(f".{target.name}{OLD_INFIX}"):
        return not _interrupted(leftover, target)
    alive = owner_alive(leftover)
    if alive is None:  # another host's build, and no locks to ask
        try:
            age = time.time() - leftover.stat().st_mtime
        except FileNotFoundError:
            return False
        return age > grace
    return not alive


def _delete(leftover: Path) -> None:
    try:
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    except FileNotFoundError:  # another gc was quicker
        pass


def _gc_remote(out: Storage, dry_run: bool, grace: float) -> list[str]:
    """Unlisted ``build-*`` prefixes of an object-store output, older than ``grace``."""
    names = out.entries()
    used: set[str] = set()
    if MANIFEST in names:
        manifest = read_manifest(out)  # a damaged one: FormatError, nothing deleted
        used = {f.split("/", 1)[0] for f in [manifest.index, *(s.file for s in manifest.shards)]}
    now = time.time()
    garbage = [
        n
        for n in names
        if BUILD_PREFIX.fullmatch(n) and n not in used and now - _started(n) > grace
    ]
    if not dry_run:
        for name in garbage:
            out.delete(name)
    return [out.url(n) for n in garbage]


def gc_scratch(
    out: Storage, temp_directory: str | os.PathLike[str] | None = None, *, dry_run: bool = False
) -> list[str]:
    """Delete the local scratch directories (``grouparrow-build-*`` in ``temp_directory``,
    default the system's temp directory) of object-store builds to ``out`` that are not
    running: those whose owner file names ``out`` and is not locked. A running build's (its
    owner file locked) is never deleted, nor one of a build to another output, nor one with
    no readable owner file (made by an older grouparrow, or killed as it was being made):
    nothing tells whose it is. Returns the paths deleted (with ``dry_run``: that would be).

    Example:
        >>> import tempfile
        >>> gc_scratch(Storage.at("memory://bucket/ds"), tempfile.mkdtemp())
        []
    """
    import tempfile

    parent = Path(temp_directory if temp_directory is not None else tempfile.gettempdir())
    if not parent.is_dir():
        return []
    with parent_lock(parent):  # builds make theirs under this lock, owner file and all
        garbage = [
            parent / name
            for name in sorted(os.listdir(parent))
            if name.startswith(SCRATCH_PREFIX)
            and (parent / name).is_dir()
            and not (parent / name).is_symlink()
            and scratch_output(parent / name) == out.uri
            and owner_alive(parent / name) is False
        ]
    if not dry_run:  # dead builds stay dead: deleting needs no lock
        for scratch in garbage:
            _delete(scratch)
    return [str(p) for p in garbage]


def _started(build_id: str) -> float:
    """The start time (POSIX seconds) written in a build prefix's name."""
    stamp = build_id.split("-")[1]
    return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp()
