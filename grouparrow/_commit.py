"""Committing a finished build to its output, so that readers see all of it or none of it.

Local disk: the build is written in a temporary directory next to the output, the manifest
last; the directory is then renamed into place (the old output, with ``mode="overwrite"``,
is moved aside first and removed after).

Object stores have no rename: the build's files are uploaded under a prefix of their own
(``<output>/build-<UTC time>-<8 hex>/``) and the manifest, which lists them, is written last
at ``<output>/grouparrow.json``: the manifest is the commit point, and readers trust only
what it lists. A failed upload deletes its prefix; ``mode="overwrite"`` deletes the replaced
manifest's prefix once the new manifest is written; with ``mode="error"`` the manifest is
written only if none exists (a conditional put where the store has one).

Example:
    >>> import tempfile
    >>> from grouparrow.storage import Storage
    >>> check_output(Storage.at(tempfile.mkdtemp() + "/new"), "error")
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

from grouparrow.errors import FormatError, OutputExistsError
from grouparrow.format import MANIFEST, Manifest, read_manifest, write_manifest
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


def staging_directory(out: Storage, temp_directory: str | os.PathLike[str] | None) -> Path:
    """A new local directory to build in: next to a local output (so that it can be renamed
    into place), else under ``temp_directory`` (default: the system's)."""
    if out.local:
        path = out.root_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.grouparrow-tmp-{uuid.uuid4().hex[:12]}"
        tmp.mkdir()
        return tmp
    import tempfile

    return Path(tempfile.mkdtemp(prefix="grouparrow-build-", dir=temp_directory))


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
    write_manifest(tmp, manifest)
    path = out.root_path
    if mode == "overwrite" and path.is_dir() and any(path.iterdir()):
        old = path.parent / f".{path.name}.grouparrow-old-{uuid.uuid4().hex[:12]}"
        os.rename(path, old)
        try:
            os.rename(tmp, path)
        except BaseException:
            os.rename(old, path)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        try:
            os.rename(tmp, path)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise OutputExistsError(
                    f"output {str(path)!r} was created by someone else during the build; "
                    "pass mode='overwrite' to replace it"
                ) from exc
            raise
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
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
    published = dataclasses.replace(
        manifest,
        index=f"{build_id}/{manifest.index}",
        shards=tuple(dataclasses.replace(s, file=f"{build_id}/{s.file}") for s in manifest.shards),
    )
    body = published.to_json().encode("utf-8")
    try:
        if not uploaded:
            out.put_files([(tmp / f, f"{build_id}/{f}") for f in files])
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
    shutil.rmtree(tmp, ignore_errors=True)
    if previous is not None:
        with contextlib.suppress(Exception):  # committed: leftovers are only wasted space
            _delete_files_of(out, previous, keep=build_id)


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
