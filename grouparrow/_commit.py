"""Committing a finished build to its output, so that readers see all of it or none of it.

Local disk: the build is written in a temporary directory next to the output, the manifest
last; the directory is then renamed into place (the old output, with ``mode="overwrite"``,
is moved aside first and removed after).

Object stores have no rename: the build's files are uploaded under a prefix of their own
(``<output>/<build id>/``) and the manifest, which lists them, is written last at
``<output>/grouparrow.json``: the manifest is the commit point, and readers trust only what
it lists.

Example:
    >>> import tempfile
    >>> from grouparrow.storage import Storage
    >>> check_output(Storage.at(tempfile.mkdtemp() + "/new"), "error")
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from pathlib import Path

from grouparrow.errors import OutputExistsError
from grouparrow.format import MANIFEST, Manifest, write_manifest
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


def commit(tmp: Path, out: Storage, manifest: Manifest, mode: str) -> None:
    """Publish the finished build in ``tmp`` (shards and index written, no manifest yet)."""
    if not out.local:
        _commit_remote(tmp, out, manifest, mode)
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


def _check_remote_output(out: Storage, mode: str) -> None:
    raise NotImplementedError("remote outputs: to do")


def _commit_remote(tmp: Path, out: Storage, manifest: Manifest, mode: str) -> None:
    raise NotImplementedError("remote outputs: to do")
