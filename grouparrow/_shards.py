"""Reading a dataset's shards by row group: from the Parquet files, or from a local Arrow IPC
cache of them.

Both readers see a shard as a list of *parts* (Parquet row groups; the IPC record batches
written one per row group) and answer where each part starts (:meth:`starts`) and what its
rows are (:meth:`read`, a record batch with the dataset's types; :meth:`scan` for parts in
order, decoded ahead on a thread for Parquet). The reader in :mod:`grouparrow.dataset`
slices groups out of those batches.

The cache (:class:`ArrowCache`) holds one uncompressed IPC file per shard, named by the
SHA-256 the manifest records for the shard: a rebuilt shard gets a new name, so a cache
file is never stale, and a shard is hashed and checked against the manifest before it is
converted, so damaged Parquet never enters the cache. Files are written to a temporary name
and renamed, and checked (schema, parts, rows, source checksum) when opened; one that fails
is rewritten. Reads from the cache are memory-mapped: zero-copy, no decoding.

Shards on a remote filesystem (:class:`~grouparrow.storage.Storage`) are opened without
read-ahead (:meth:`Storage.open_ranges`) and read with PyArrow's ``pre_buffer``: a random
fetch reads the file's footer once, then one request of about the row group's compressed
bytes; a stream asks for its chunks of row groups (``SCAN_CHUNK_BYTES``) a request each.
The cache downloads a remote shard once (to a temporary file beside the cache file, in
pieces), checks its SHA-256 and converts it from there: cached shards never touch the remote
again.

Example:
    >>> import grouparrow as ga, pyarrow as pa, tempfile
    >>> out = tempfile.mkdtemp() + "/ds"
    >>> ds = ga.build(pa.table({"u": ["a", "b", "a"]}), key="u", output=out)
    >>> shards = ParquetShards(ds.storage, ds.manifest)
    >>> shards.starts(0), shards.read(0, 0).num_rows
    ([0, 3], 3)
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from grouparrow import _arrow
from grouparrow.errors import CorruptDatasetError, FormatError, GroupArrowError
from grouparrow.format import (
    DatasetReplacedError,
    Manifest,
    ManifestStamp,
    manifest_stamp,
    open_manifest,
    replaced_error,
    sha256_file,
)
from grouparrow.storage import Storage

_OPEN_FILES = 64
#: Uncompressed bytes of row groups a stream decodes as one chunk (see SCAN_AHEAD).
SCAN_CHUNK_BYTES = 8 * 2**20
#: Chunks a stream decodes at once, ahead of the one being consumed (see ``scan``).
SCAN_AHEAD = 3
_SOURCE = b"grouparrow.source_sha256"
_PARTS = b"grouparrow.parts"


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _read_pool() -> ThreadPoolExecutor:
    """The threads streams decode on, shared (starting threads costs ~1 ms a scan); a
    process forked from this one (DataLoader workers) starts its own."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(SCAN_AHEAD, thread_name_prefix="grouparrow-read"))
    return _POOL[1]


def default_cache_dir() -> Path:
    """``$GROUPARROW_CACHE``, else ``$XDG_CACHE_HOME/grouparrow``, else ``~/.cache/grouparrow``."""
    if env := os.environ.get("GROUPARROW_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "grouparrow"


def same_shards(a: Manifest, b: Manifest) -> bool:
    """Whether two manifests list the same shard files (names, sizes, checksums, rows).

    Example:
        >>> same_shards(ds.manifest, ds.manifest)                      # doctest: +SKIP
        True
    """

    def identity(m: Manifest) -> list[tuple[Any, ...]]:
        return [(s.file, s.file_bytes, s.sha256, s.num_rows, s.num_groups) for s in m.shards]

    return identity(a) == identity(b)


def open_parquet(
    storage: Storage, rel: str, metadata: pq.FileMetaData | None = None
) -> pq.ParquetFile:
    """The Parquet file ``rel`` of ``storage``, its pages' CRC-32 checked as they are read: a
    local file by path (PyArrow's own reader); a remote one without read-ahead, its column
    chunks fetched with ``pre_buffer`` (a row group's chunks coalesced into one request)."""
    if storage.local:
        return pq.ParquetFile(storage.path(rel), metadata=metadata, page_checksum_verification=True)
    return pq.ParquetFile(
        storage.open_ranges(rel),
        metadata=metadata,
        pre_buffer=True,
        page_checksum_verification=True,
    )


#: What reading a damaged Parquet file raises: Arrow's errors, I/O errors, and
#: ``UnicodeDecodeError`` (a ``ValueError``) from a damaged footer's key-value metadata.
READ_ERRORS = (pa.ArrowException, OSError, ValueError, EOFError)


@dataclass(slots=True)
class CheckedFile:
    """A Parquet file opened once and checked against the manifest (:func:`open_checked`):
    ``handle`` is what every reader of it reads through (locally one open file, so a
    dataset replaced later cannot swap it), ``file`` its reader, ``size`` its bytes."""

    handle: Any
    file: pq.ParquetFile
    size: int

    def reader(self, storage: Storage, rel: str) -> pq.ParquetFile:
        """Another reader of the same file (for a thread of its own): locally on the same
        open file (positional reads are thread-safe), remotely a new ranged file."""
        if storage.local:
            return pq.ParquetFile(
                self.handle, metadata=self.file.metadata, page_checksum_verification=True
            )
        return open_parquet(storage, rel, self.file.metadata)

    def sha256(self) -> str:
        """The SHA-256 of the whole file, read in pieces through the handle."""
        return _sha256(self.handle, 0, self.size)


_HASH_PIECE = 4 * 2**20


def _read_range(handle: Any, offset: int, length: int) -> bytes:
    """``length`` bytes at ``offset`` of an open file (positional where it can)."""
    if isinstance(handle, pa.NativeFile):
        return bytes(handle.read_at(length, offset))
    handle.seek(offset)
    return bytes(handle.read(length))


def _sha256(handle: Any, offset: int, length: int) -> str:
    """The SHA-256 of ``length`` bytes at ``offset`` of an open file, read in pieces."""
    digest = hashlib.sha256()
    for start in range(offset, offset + length, _HASH_PIECE):
        digest.update(_read_range(handle, start, min(_HASH_PIECE, offset + length - start)))
    return digest.hexdigest()


def open_checked(
    storage: Storage,
    rel: str,
    label: str,
    *,
    file_bytes: int | None,
    tail_bytes: int = 0,
    tail_sha256: str = "",
    sha256: str = "",
    num_rows: int,
    rows_noun: str = "",
    schema: pa.Schema | None = None,
    current: Callable[[], None] = lambda: None,
) -> CheckedFile:
    """Open the Parquet file ``rel`` (named ``label`` in messages) and check it against what
    the manifest records: its size (``file_bytes``; ``None``: not recorded), the SHA-256 of
    its tail (``tail_sha256``: page index and footer) or, given ``sha256``, of all of it,
    its row count and its schema. ``current()`` runs once the file is open (locally: a
    :class:`~grouparrow.format.DatasetReplacedError` if the dataset was replaced since it was
    opened). A missing file, one that cannot be parsed or that fails a check is a
    :class:`CorruptDatasetError` naming it. The file's pages are CRC-checked when read.

    Example:
        >>> ds = ga.open(out)                                              # doctest: +SKIP
        >>> checked = open_checked(ds.storage, "index.parquet", "index", file_bytes=None,
        ...                        num_rows=ds.num_groups)                 # doctest: +SKIP
    """
    damaged = "the dataset is damaged: run grouparrow verify, and rebuild it"
    try:
        if storage.local:
            handle: Any = pa.OSFile(storage.path(rel))
        else:
            handle = storage.open_ranges(rel)
    except FileNotFoundError:
        current()
        raise CorruptDatasetError(
            f"{label} is missing; the dataset is damaged: rebuild it"
        ) from None
    except READ_ERRORS as exc:
        current()
        raise CorruptDatasetError(f"{label} cannot be opened ({exc}); {damaged}") from exc
    try:
        return _check(
            storage,
            rel,
            label,
            handle,
            file_bytes,
            tail_bytes,
            tail_sha256,
            sha256,
            num_rows,
            rows_noun,
            schema,
            current,
        )
    except BaseException:
        handle.close()
        raise


def _check(
    storage: Storage,
    rel: str,
    label: str,
    handle: Any,
    file_bytes: int | None,
    tail_bytes: int,
    tail_sha256: str,
    sha256: str,
    num_rows: int,
    rows_noun: str,
    schema: pa.Schema | None,
    current: Callable[[], None],
) -> CheckedFile:
    """:func:`open_checked`'s checks of the file open as ``handle``."""
    damaged = "the dataset is damaged: run grouparrow verify, and rebuild it"
    current()
    size = handle.size() if isinstance(handle, pa.NativeFile) else getattr(handle, "size", None)
    if size is None:
        size = storage.size(rel)
    problem = None
    try:
        if file_bytes is not None and size != file_bytes:
            problem = f"{label} has {size:,} bytes but the manifest says {file_bytes:,}"
        elif sha256:
            if _sha256(handle, 0, size) != sha256:
                problem = f"{label} does not match its SHA-256 in the manifest"
        elif tail_sha256 and _sha256(handle, size - tail_bytes, tail_bytes) != tail_sha256:
            problem = (
                f"{label}: its footer or page index does not match their checksum in the manifest"
            )
        file = pq.ParquetFile(handle, pre_buffer=not storage.local, page_checksum_verification=True)
        rows = file.metadata.num_rows
        stored = file.schema_arrow
    except READ_ERRORS as exc:
        raise CorruptDatasetError(
            f"{problem or f'{label} cannot be read ({exc})'}; {damaged}"
        ) from exc
    if rows != num_rows:
        noun = f" {rows_noun}" if rows_noun else ""
        raise CorruptDatasetError(
            f"{label} has {rows} rows but the manifest lists {num_rows}{noun}; the dataset is "
            "damaged: rebuild it"
        )
    if problem is None and schema is not None and not stored.equals(schema, check_metadata=False):
        problem = f"{label} has the schema {stored}, not the manifest's {schema}"
    if problem is not None:
        raise CorruptDatasetError(f"{problem}; {damaged}")
    return CheckedFile(handle, file, size)


class ParquetShards:
    """The shard files of a dataset, opened on demand (at most 64 at once) and checked
    against the manifest when opened (:func:`open_checked`: size, tail checksum, rows,
    schema); their pages' CRC-32 are checked as they are read.

    ``storage`` is where the dataset lives (a local directory may be given as a path);
    ``stamp`` identifies the manifest read (:func:`~grouparrow.format.open_manifest`): a
    local shard opened once the dataset was replaced there is refused with a
    :class:`~grouparrow.format.DatasetReplacedError` instead of mixing two datasets."""

    def __init__(
        self,
        storage: Storage | str | os.PathLike[str],
        manifest: Manifest,
        stamp: ManifestStamp | None = None,
    ) -> None:
        self.storage = storage if isinstance(storage, Storage) else Storage.at(storage)
        self.manifest = manifest
        self.stamp = stamp
        self.schema = manifest.schema
        # Parquet stores a few types in another form (timestamp[s] as [ms]): cast them back.
        self._stored = _arrow.parquet_schema(self.schema)
        self._restore = not self._stored.equals(self.schema)
        self._files: OrderedDict[int, CheckedFile] = OrderedDict()
        self._starts: OrderedDict[int, list[int]] = OrderedDict()
        self._pid = os.getpid()  # remote files opened by a parent process: reopen them
        # A Parquet reader is not safe to use from two threads at once (fetches from several
        # threads): one read at a time. Streams read through readers of their own.
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # Open files do not cross process boundaries (DataLoader workers): reopen there.
        state = {k: v for k, v in self.__dict__.items() if k != "_lock"}
        return {**state, "_files": OrderedDict(), "_starts": OrderedDict()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def file_path(self, shard: int) -> str:
        """Where shard ``shard`` is: a local path, or a URI (for messages and DuckDB)."""
        return self.storage.url(self.manifest.shards[shard].file)

    def starts(self, shard: int) -> list[int]:
        """The first row of each row group of a shard, then the shard's row count."""
        starts = self._starts.get(shard)
        if starts is None:
            meta = self._metadata(shard)
            starts = [0]
            for i in range(meta.num_row_groups):
                starts.append(starts[-1] + meta.row_group(i).num_rows)
            remember(self._starts, shard, starts, _OPEN_FILES)
        return starts

    def read(self, shard: int, part: int, columns: list[str] | None = None) -> pa.RecordBatch:
        """Row group ``part`` of a shard, decoded, as one batch with the dataset's types."""

        def read() -> pa.Table:
            with self._lock:
                file = self._checked(shard).file
                return file.read_row_group(part, columns=columns, use_threads=False)

        return one_batch(self._restored(shard, read))

    def scan(
        self, shard: int, first: int, end: int, columns: list[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """The rows of row groups ``first .. end - 1`` of a shard, in order, as batches.

        Row groups are decoded a chunk (~``SCAN_CHUNK_BYTES``) at a time on background
        threads, ``SCAN_AHEAD`` chunks at once (each thread with a reader of its own, of the
        same open file), while the caller works on the chunk before: at most
        ``SCAN_AHEAD + 1`` chunks are held, whatever the shard's size. A chunk is row groups
        of at most ``SCAN_CHUNK_BYTES`` of Parquet's uncompressed page bytes together (or one
        larger row group); decoded, it takes more (dictionary-encoded columns expand, and a
        decode peaks at ~2.5x its output): measured, 60-155 MB of Arrow memory at peak
        (tests/reliability/test_resources.py). (Arrow's dataset scanner reads a whole shard
        ahead of a slower consumer: unbounded memory.)"""
        chunks = self._chunks(shard, first, end)
        if not chunks:
            return
        rel = self.manifest.shards[shard].file
        with self._lock:
            checked = self._checked(shard)
        readers = threading.local()

        def read(parts: list[int]) -> pa.Table:
            def decode() -> pa.Table:
                file = getattr(readers, "file", None)
                if file is None:
                    file = readers.file = checked.reader(self.storage, rel)
                return file.read_row_groups(parts, columns=columns)

            return self._restored(shard, decode)

        pool = _read_pool()
        ahead = deque(pool.submit(read, c) for c in chunks[:SCAN_AHEAD])
        try:
            for chunk in chunks[SCAN_AHEAD:] + [None] * len(ahead):
                table = ahead.popleft().result()
                if chunk is not None:
                    ahead.append(pool.submit(read, chunk))
                yield from table.to_batches()
        finally:
            for future in ahead:  # a stream left early: drop what it asked for
                future.cancel()

    def _chunks(self, shard: int, first: int, end: int) -> list[list[int]]:
        """Row groups ``first .. end - 1`` cut into runs of at most ``SCAN_CHUNK_BYTES`` (a
        larger row group alone)."""
        meta = self._metadata(shard)
        chunks: list[list[int]] = []
        size = SCAN_CHUNK_BYTES
        for rg in range(first, end):
            rg_bytes = meta.row_group(rg).total_byte_size
            if size + rg_bytes > SCAN_CHUNK_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(rg)
            size += rg_bytes
        return chunks

    def _restored(self, shard: int, read: Callable[[], pa.Table]) -> pa.Table:
        """``read()``'s table with the dataset's types; a damaged file's error named."""
        try:
            table = read()
        except GroupArrowError:
            raise
        except READ_ERRORS as exc:
            raise self.damaged(shard, exc) from exc
        if not self._restore:
            return table
        schema = pa.schema([self.schema.field(name) for name in table.schema.names])
        return pa.Table.from_batches(
            [_arrow.conform(b, schema) for b in table.to_batches()], schema
        )

    def _metadata(self, shard: int) -> pq.FileMetaData:
        with self._lock:
            return self._checked(shard).file.metadata

    def _checked(self, shard: int) -> CheckedFile:
        if self._pid != os.getpid():  # forked: the parent's remote files do not work here
            self._files, self._pid = OrderedDict(), os.getpid()
        checked = self._files.get(shard)
        if checked is None:
            checked = self.open_shard(shard)
            remember(self._files, shard, checked, _OPEN_FILES)
        return checked

    def open_shard(self, shard: int) -> CheckedFile:
        """Open and check a shard file (not kept: :meth:`read` and :meth:`scan` keep theirs).

        Example:
            >>> shards.open_shard(0).size == shards.manifest.shards[0].file_bytes  # doctest: +SKIP
            True
        """
        info = self.manifest.shards[shard]
        try:
            return open_checked(
                self.storage,
                info.file,
                f"shard file {self.file_path(shard)}",
                file_bytes=info.file_bytes,
                tail_bytes=info.tail_bytes,
                tail_sha256=info.tail_sha256,
                num_rows=info.num_rows,
                schema=self._stored,
                current=self.check_current,
            )
        except CorruptDatasetError as exc:
            raise self.replaced_or(exc) from exc.__cause__

    def check_current(self) -> None:
        """A :class:`~grouparrow.format.DatasetReplacedError` if the dataset at the location
        is no longer the one read (checked locally, where a rebuild replaces the files in
        place; an object-store build writes new files under a new prefix). See
        :meth:`changed`."""
        if self.storage.local:
            self.changed()

    def changed(self) -> tuple[Manifest, ManifestStamp] | None:
        """The manifest now at the dataset's location and its stamp when it is not the one
        read but lists the same shard files (``compute_stats`` rewrote the index and the
        manifest: the shards are as they were); ``None`` when it is the one read. A
        :class:`~grouparrow.format.DatasetReplacedError` when the dataset was replaced
        (rebuilt: other shards, or none there now).

        Example:
            >>> shards.changed() is None                        # doctest: +SKIP
            True
        """
        if self.stamp is None:
            return None
        if self.storage.local and manifest_stamp(self.storage) == self.stamp:
            return None
        try:
            current, stamp = open_manifest(self.storage)
        except (FormatError, FileNotFoundError):
            raise replaced_error(self.storage.uri) from None
        if stamp == self.stamp:
            return None
        if not same_shards(current, self.manifest):
            raise replaced_error(self.storage.uri)
        return current, stamp

    def replaced_or(self, error: FormatError) -> FormatError:
        """``error``, or a :class:`~grouparrow.format.DatasetReplacedError` when the dataset
        was replaced since it was opened (the likelier cause of a missing or changed file)."""
        try:
            self.changed()
        except DatasetReplacedError as replaced:
            replaced.__cause__ = error
            return replaced
        return error

    def sha256(self, shard: int) -> str:
        """The SHA-256 of a shard file, read through the file the reader opened."""
        with self._lock:
            checked = self._checked(shard)
        return checked.sha256()

    def damaged(self, shard: int, exc: BaseException) -> FormatError:
        return self.replaced_or(
            CorruptDatasetError(
                f"shard file {self.file_path(shard)} cannot be read ({exc}); the dataset is "
                "damaged: run grouparrow verify"
            )
        )


class ArrowCache:
    """The shards as memory-mapped, uncompressed Arrow IPC files under ``directory``, one
    record batch per Parquet row group, each written the first time its shard is read."""

    def __init__(self, source: ParquetShards, directory: str | os.PathLike[str]) -> None:
        self.source = source
        self.directory = Path(directory)
        self.schema = source.schema
        self._readers: OrderedDict[int, pa.ipc.RecordBatchFileReader] = OrderedDict()
        self._starts: dict[int, list[int]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_readers": OrderedDict(), "_starts": {}}

    def file_path(self, shard: int) -> Path:
        return self.directory / f"{self.source.manifest.shards[shard].sha256}.arrow"

    def starts(self, shard: int) -> list[int]:
        self._reader(shard)
        return self._starts[shard]

    def read(self, shard: int, part: int, columns: list[str] | None = None) -> pa.RecordBatch:
        batch = self._reader(shard).get_batch(part)
        return batch if columns is None else batch.select(columns)

    def scan(
        self, shard: int, first: int, end: int, columns: list[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Record batches ``first .. end - 1`` of a shard (memory-mapped views)."""
        for part in range(first, end):
            yield self.read(shard, part, columns)

    def ensure(self, shard: int) -> Path:
        """The shard's cache file, written now if it is missing or fails its checks."""
        self._reader(shard)
        return self.file_path(shard)

    def _reader(self, shard: int) -> pa.ipc.RecordBatchFileReader:
        reader = self._readers.get(shard)
        if reader is None:
            reader = self._open(shard)
            if reader is None:
                self._write(shard)
                reader = self._open(shard)
                if reader is None:
                    raise CorruptDatasetError(
                        f"the Arrow cache file {self.file_path(shard)} fails its checks "
                        "right after being written; is the cache directory shared with "
                        "another writer? Delete the file and retry"
                    )
            remember(self._readers, shard, reader, _OPEN_FILES)
        return reader

    def _open(self, shard: int) -> pa.ipc.RecordBatchFileReader | None:
        """The cache file's reader when it exists and matches the shard, else ``None``."""
        path = self.file_path(shard)
        info = self.source.manifest.shards[shard]
        try:
            reader = pa.ipc.open_file(pa.memory_map(str(path)))
        except FileNotFoundError:
            return None
        except (pa.ArrowException, OSError):
            return None  # truncated or damaged: rewrite it
        meta = reader.schema.metadata or {}
        if (
            meta.get(_SOURCE) != info.sha256.encode()
            or not reader.schema.equals(self.schema, check_metadata=False)
            or reader.num_record_batches != int(meta.get(_PARTS, b"-1"))
        ):
            return None
        starts = [0]
        for i in range(reader.num_record_batches):
            starts.append(starts[-1] + reader.get_batch(i).num_rows)
        if starts[-1] != info.num_rows:
            return None
        self._starts[shard] = starts
        return reader

    def _write(self, shard: int) -> None:
        storage = self.source.storage
        source = self.source.file_path(shard)
        expected = self.source.manifest.shards[shard].sha256
        self.directory.mkdir(parents=True, exist_ok=True)
        if storage.local:
            # Hashed through the file the reader opened and converts from: the bytes checked
            # are the bytes cached, even if the dataset is replaced meanwhile.
            if self.source.sha256(shard) != expected:
                raise self.source.replaced_or(self._mismatch(source))
            parts = len(self.source.starts(shard)) - 1
            self._convert(expected, parts, lambda part: self.source.read(shard, part))
            return
        # Remote: one download, in pieces, hashed and converted from the local copy.
        fd, download = tempfile.mkstemp(prefix=".download-", suffix=".parquet", dir=self.directory)
        os.close(fd)
        try:
            try:
                storage.get(self.source.manifest.shards[shard].file, download)
            except FileNotFoundError:
                raise self.source.replaced_or(
                    CorruptDatasetError(
                        f"shard file {source} is missing; the dataset is damaged: rebuild it"
                    )
                ) from None
            if sha256_file(download) != expected:
                raise self.source.replaced_or(self._mismatch(source))
            try:
                file = pq.ParquetFile(download)
            except READ_ERRORS as exc:
                raise self.source.damaged(shard, exc) from exc

            def read(part: int) -> pa.RecordBatch:
                def decode() -> pa.Table:
                    return file.read_row_group(part, use_threads=False)

                return one_batch(self.source._restored(shard, decode))

            self._convert(expected, file.metadata.num_row_groups, read)
        finally:
            Path(download).unlink(missing_ok=True)

    @staticmethod
    def _mismatch(source: str) -> CorruptDatasetError:
        return CorruptDatasetError(
            f"shard file {source} does not match the checksum in the manifest, so it is not "
            "cached; run grouparrow verify, and rebuild the dataset"
        )

    def _convert(
        self,
        checksum: str,
        parts: int,
        read: Callable[[int], pa.RecordBatch],
    ) -> None:
        """Write a shard's cache file from its ``parts`` row groups, ``read(part)`` each."""
        meta = {_SOURCE: checksum.encode(), _PARTS: str(parts).encode()}
        schema = self.schema.with_metadata({**(self.schema.metadata or {}), **meta})
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".arrow", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
                for part in range(parts):
                    batch = read(part)
                    writer.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=schema))
            os.replace(tmp, self.directory / f"{checksum}.arrow")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def one_batch(table: pa.Table) -> pa.RecordBatch:
    """``table`` (a row group's rows) as one record batch."""
    batches = table.to_batches()
    if len(batches) == 1:
        return batches[0]
    batches = table.combine_chunks().to_batches()
    return batches[0] if batches else _arrow.empty_batch(table.schema)


def remember(cache: OrderedDict[int, Any], key: int, value: Any, size: int) -> None:
    """Put ``key`` in an LRU ``cache`` of at most ``size`` entries."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > size:
        cache.popitem(last=False)
