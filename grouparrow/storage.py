"""Where datasets and build files live: a local directory, or a URI on any fsspec filesystem
(``s3://``, ``gs://``, ``az://``, ``memory://``, ``file://`` ...).

A :class:`Storage` is a root location plus a filesystem; paths below it are relative
(``"data/shard-00000-of-00004.parquet"``). PyArrow reads through it
(:meth:`Storage.arrow_filesystem`) and DuckDB through the same fsspec filesystem registered
on a connection (:meth:`Storage.register`; DuckDB's own httpfs extension is not needed).
Credentials and endpoints come from ``storage_options``, passed to fsspec as they are
(``{"key": ..., "secret": ..., "client_kwargs": {"endpoint_url": ...}}`` for s3fs); whatever
else the filesystem library reads by itself (AWS environment variables, ``~/.aws``, GCP
application credentials) is that library's documented behaviour.

A Storage pickles (fsspec filesystems do), so distributed tasks receive it as an argument.

Example:
    >>> import tempfile
    >>> s = Storage.at(tempfile.mkdtemp())
    >>> s.local, s.write_bytes("a/b.txt", b"hi"), s.read_bytes("a/b.txt")
    (True, None, b'hi')
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb
    import fsspec
    import pyarrow.fs


#: Bytes read at a time when a file is read from start to end (checksums).
STREAM_BLOCK = 8 * 2**20


def is_uri(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` names a filesystem by protocol (``s3://bucket/x``)."""
    text = os.fspath(location)
    return "://" in text and not os.path.exists(text)


class Storage:
    """A root location and the filesystem it lives on.

    ``Storage.at(path_or_uri, storage_options)`` makes one; local paths (and ``file://``
    URIs) use the local disk directly (``local`` is true, ``root_path`` a ``Path``).
    """

    def __init__(self, fs: fsspec.AbstractFileSystem | None, root: str, uri: str) -> None:
        self._instance = fs
        self._pid = os.getpid()
        self.root = root.rstrip("/") or "/"
        self.uri = uri.rstrip("/") or uri

    @classmethod
    def at(
        cls,
        location: str | os.PathLike[str],
        storage_options: Mapping[str, Any] | None = None,
    ) -> Storage:
        """The storage at ``location``: a path, or a URI any installed fsspec filesystem
        understands; ``storage_options`` go to that filesystem.

        Example:
            >>> Storage.at("memory://bucket/ds").uri
            'memory://bucket/ds'
        """
        text = os.fspath(location)
        if text.startswith("file://"):
            text = text[len("file://") :]
        if not is_uri(text):
            if storage_options:
                raise ValueError(
                    f"storage_options were given, but {text!r} is a local path; they apply "
                    "to URIs such as s3://bucket/path"
                )
            root = str(Path(text).absolute())
            return cls(None, root, root)
        try:
            import fsspec
        except ImportError as exc:  # pragma: no cover - fsspec comes with datasets
            raise ModuleNotFoundError(
                "reading or writing URIs needs fsspec: pip install fsspec"
            ) from exc
        protocol = text.split("://", 1)[0]
        try:
            fs, root = fsspec.core.url_to_fs(text, **dict(storage_options or {}))
        except (ImportError, ValueError) as exc:
            extra = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}
            hint = extra.get(protocol)
            install = f" (pip install {hint}, or grouparrow[{protocol}])" if hint else ""
            raise ValueError(
                f"cannot use {text!r}: no filesystem for {protocol}://{install}: {exc}"
            ) from exc
        return cls(fs, root, text)

    @property
    def _fs(self) -> fsspec.AbstractFileSystem | None:
        """The filesystem (``None`` when local), made again in a forked process: fsspec's
        async filesystems (s3fs, gcsfs) refuse to run in a child of the process that made
        them ("not fork-safe"), and DataLoader workers are forked."""
        fs = self._instance
        if fs is not None and self._pid != os.getpid():
            fs = self._instance = type(fs)(*fs.storage_args, **fs.storage_options)
            self._pid = os.getpid()
        return fs

    # -- names ------------------------------------------------------------------------------
    @property
    def local(self) -> bool:
        """Whether this is a directory on the local disk."""
        return self._fs is None

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The fsspec filesystem (the local one for a local directory)."""
        if self._fs is None:
            import fsspec

            return fsspec.filesystem("file")
        return self._fs

    @property
    def root_path(self) -> Path:
        """The local directory (only for local storage)."""
        if self._fs is not None:
            raise ValueError(f"{self.uri!r} is not on the local disk")
        return Path(self.root)

    def path(self, rel: str = "") -> str:
        """The filesystem path of ``rel`` (no protocol): for PyArrow and fsspec calls."""
        return f"{self.root}/{rel}" if rel else self.root

    def url(self, rel: str = "") -> str:
        """``rel`` as a full URI (or local path): for DuckDB and messages."""
        return f"{self.uri}/{rel}" if rel else self.uri

    def child(self, rel: str) -> Storage:
        """The storage rooted at ``rel`` below this one."""
        return Storage(self._fs, self.path(rel), self.url(rel))

    def __repr__(self) -> str:
        return f"Storage({self.uri!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Storage) and (self.uri, self._fs) == (other.uri, other._fs)

    def __hash__(self) -> int:
        return hash(self.uri)

    # -- readers' views ---------------------------------------------------------------------
    def arrow_filesystem(self) -> pyarrow.fs.FileSystem:
        """A PyArrow filesystem over this storage (local, or fsspec wrapped)."""
        import pyarrow.fs

        if self._fs is None:
            return pyarrow.fs.LocalFileSystem()
        return pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(self._fs))

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let DuckDB on ``con`` read and write :meth:`url` paths (no-op when local)."""
        if self._fs is None:
            return
        protocols = self._fs.protocol
        name = protocols if isinstance(protocols, str) else protocols[0]
        if not con.filesystem_is_registered(name):
            con.register_filesystem(self._fs)

    # -- files ------------------------------------------------------------------------------
    def open(self, rel: str, mode: str = "rb") -> IO[Any]:
        if self._fs is None:
            return open(self.path(rel), mode)
        return self._fs.open(self.path(rel), mode)

    def exists(self, rel: str = "") -> bool:
        if self._fs is None:
            return os.path.exists(self.path(rel))
        return bool(self._fs.exists(self.path(rel)))

    def is_dir(self, rel: str = "") -> bool:
        if self._fs is None:
            return os.path.isdir(self.path(rel))
        return bool(self._fs.isdir(self.path(rel)))

    def size(self, rel: str) -> int:
        if self._fs is None:
            return os.path.getsize(self.path(rel))
        return int(self._fs.size(self.path(rel)))

    def open_ranges(self, rel: str) -> IO[Any]:
        """``rel`` opened for random access: on a remote filesystem without read-ahead or a
        block cache, so that each ``read`` is one ranged request of the bytes asked for
        (s3fs would otherwise fetch 50 MB blocks). PyArrow's Parquet reader with
        ``pre_buffer=True`` then reads a row group's column chunks in one coalesced request.

        Example:
            >>> import tempfile
            >>> s = Storage.at(tempfile.mkdtemp()); s.write_bytes("f", b"0123456789")
            >>> with s.open_ranges("f") as f: _ = f.seek(4); f.read(3)
            b'456'
        """
        if self._fs is None:
            return open(self.path(rel), "rb")
        try:
            return self._fs.open(self.path(rel), "rb", block_size=2**20, cache_type="none")
        except TypeError:  # a filesystem whose files take no cache options
            return self._fs.open(self.path(rel), "rb")

    def sha256(self, rel: str) -> str:
        """The SHA-256 of ``rel``'s bytes, read in ``STREAM_BLOCK`` pieces (never whole).

        Example:
            >>> s = Storage.at("memory://sha-example"); s.write_bytes("f", b"")
            >>> s.sha256("f")[:12]
            'e3b0c44298fc'
        """
        digest = hashlib.sha256()
        with self.open_ranges(rel) as f:
            while chunk := f.read(STREAM_BLOCK):
                digest.update(chunk)
        return digest.hexdigest()

    def read_bytes(self, rel: str) -> bytes:
        """The bytes of ``rel`` (remote: one GET of the whole object, no size looked up
        first, so a listing cached by the filesystem cannot truncate it)."""
        if self._fs is None:
            return Path(self.path(rel)).read_bytes()
        return bytes(self._fs.cat_file(self.path(rel)))

    def write_bytes(self, rel: str, data: bytes, *, exclusive: bool = False) -> None:
        """Write ``rel`` whole (an object store's put is atomic; locally: temp + rename).

        With ``exclusive``, raise ``FileExistsError`` if ``rel`` exists; on object stores
        that support conditional writes (S3, GCS with current fsspec libraries) the check
        and the write are one atomic request.
        """
        if self._fs is None:
            target = Path(self.path(rel))
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if exclusive:
                try:
                    os.link(tmp, target)  # fails if the target exists: atomic
                finally:
                    os.unlink(tmp)
            else:
                os.replace(tmp, target)
            return
        if not exclusive:
            self._fs.pipe_file(self.path(rel), data)
            return
        try:
            self._fs.pipe_file(self.path(rel), data, mode="create")
        except TypeError:  # an older filesystem without mode=: check, then write
            if self._fs.exists(self.path(rel)):
                raise FileExistsError(self.url(rel)) from None
            self._fs.pipe_file(self.path(rel), data)

    def entries(self, rel: str = "") -> list[str]:
        """Names directly below ``rel`` (files and folders; no recursion), sorted; ``[]``
        when there is nothing there. One listing request on an object store."""
        base = self.path(rel)
        if self._fs is None:
            return sorted(os.listdir(base)) if os.path.isdir(base) else []
        self._fs.invalidate_cache(base)
        try:
            found = self._fs.ls(base, detail=False)
        except (FileNotFoundError, NotADirectoryError):
            return []
        prefix = base.rstrip("/") + "/"
        names = {p.rstrip("/")[len(prefix) :] for p in found if p.rstrip("/").startswith(prefix)}
        return sorted(n for n in names if n)

    def is_file(self, rel: str = "") -> bool:
        """Whether ``rel`` is a file (an object, on an object store)."""
        if self._fs is None:
            return os.path.isfile(self.path(rel))
        return bool(self._fs.isfile(self.path(rel)))

    def invalidate(self) -> None:
        """Forget what the filesystem cached of listings (s3fs and gcsfs keep them), so that
        sizes and existence are asked again: files changed by another process are seen."""
        if self._fs is not None:
            self._fs.invalidate_cache()

    def list(self, rel: str = "") -> list[str]:
        """Paths of the files below ``rel`` (recursively), relative to this storage's root."""
        base = self.path(rel)
        if self._fs is None:
            root = Path(base)
            if not root.is_dir():
                return []
            return sorted(str(p.relative_to(self.root)) for p in root.rglob("*") if p.is_file())
        if not self._fs.exists(base):
            return []
        found = self._fs.find(base)
        prefix = self.root.rstrip("/") + "/"
        return sorted(p[len(prefix) :] if p.startswith(prefix) else p for p in found)

    def put(self, local: str | os.PathLike[str], rel: str) -> None:
        """Store the local file or directory ``local`` at ``rel`` (moved when local storage
        is on the same disk, else uploaded)."""
        source = Path(local)
        if self._fs is None:
            target = Path(self.path(rel))
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(source, target)
            except OSError:  # another disk, or a directory target that exists
                if source.is_dir():
                    shutil.copytree(source, target, dirs_exist_ok=True)
                else:
                    shutil.copyfile(source, target)
            return
        if source.is_dir():
            files = sorted(p for p in source.rglob("*") if p.is_file())
            self.put_files([(f, f"{rel}/{f.relative_to(source).as_posix()}") for f in files])
        else:
            self._fs.put_file(str(source), self.path(rel))

    def put_files(self, pairs: Sequence[tuple[Path, str]]) -> None:
        """Store each local file at its relative path: on an async filesystem (s3fs,
        gcsfs), uploaded concurrently in one call; locally, moved or copied.

        Example:
            >>> import tempfile
            >>> local = Path(tempfile.mkdtemp()) / "a.txt"; _ = local.write_text("hi")
            >>> s = Storage.at("memory://put-example"); s.put_files([(local, "x/a.txt")])
            >>> s.read_bytes("x/a.txt")
            b'hi'
        """
        if not pairs:
            return
        if self._fs is None:
            for local, rel in pairs:
                self.put(local, rel)
            return
        self._fs.put([str(p) for p, _ in pairs], [self.path(r) for _, r in pairs])

    def get(self, rel: str, local: str | os.PathLike[str]) -> None:
        """Copy the file ``rel`` to the local path ``local``."""
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        if self._fs is None:
            shutil.copyfile(self.path(rel), local)
        else:
            self._fs.get_file(self.path(rel), os.fspath(local))

    def delete(self, rel: str = "") -> None:
        """Remove the file or the tree at ``rel``, if there."""
        target = self.path(rel)
        if self._fs is None:
            if os.path.isdir(target):
                shutil.rmtree(target, ignore_errors=True)
            elif os.path.lexists(target):
                os.unlink(target)
            return
        self._fs.invalidate_cache(target)  # another process may have written there
        if self._fs.exists(target):
            self._fs.rm(target, recursive=True)
