"""Writing one shard: group-clustered rows to Parquet, and the shard's index rows.

The shard's rows arrive in order as Arrow batches. :class:`ShardWriter` cuts them into row
groups of about ``row_group_bytes``, ending at a group boundary where one is near, and writes
them with PyArrow (zstd, page index) on a background thread, hashing the bytes as they go
out, while the caller goes on decoding the next batch. :class:`GroupRuns` turns the key
column into index rows.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from grouparrow._arrow import run_starts
from grouparrow.errors import GroupArrowError
from grouparrow.format import index_schema

#: Bounds on rows per row group, whatever the bytes per row.
ROW_GROUP_ROWS = (16, 65_536)
_QUEUED_ROW_GROUPS = 1


class ShardWriter:
    """Writes a shard file from ordered batches; ``close()`` returns rows, size and SHA-256.

    Example:
        >>> import pyarrow as pa, tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "s.parquet"
        >>> w = ShardWriter(path, pa.schema([("k", pa.string())]), "k", 1 << 20)
        >>> w.add(pa.record_batch({"k": ["a", "a", "b"]}))
        >>> w.close()[0]
        3
    """

    def __init__(self, path: Path, schema: pa.Schema, key_column: str, row_group_bytes: int):
        self._sink = HashingFile(path)
        self._writer = pq.ParquetWriter(
            self._sink,
            schema,
            compression="zstd",
            # Dictionary-encode only the key (long runs of one value): measured, trying it on
            # every text column and 64 KiB pages cost 20 % more write time for no gain.
            use_dictionary=[key_column],
            write_page_index=True,
            write_page_checksum=True,  # CRC-32 per page: readers check them
            write_statistics=[key_column],
        )
        self._key_column = key_column
        self._target_bytes = row_group_bytes
        self._target_rows: int | None = None
        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0
        self.num_rows = 0
        self._queue: queue.Queue[pa.Table | None] = queue.Queue(_QUEUED_ROW_GROUPS)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="grouparrow-writer", daemon=True)
        self._thread.start()

    def add(self, batch: pa.RecordBatch) -> None:
        """Append ``batch``; full row groups go to the writer thread."""
        if self._error is not None:
            raise self._error
        if not batch.num_rows:
            return
        self._buffer.append(batch)
        self._buffered += batch.num_rows
        self.num_rows += batch.num_rows
        if self._target_rows is None and self._buffered >= ROW_GROUP_ROWS[1]:
            self._target_rows = self._estimate()
        self._drain()

    def _estimate(self) -> int:
        """Rows per row group, from the bytes of the first rows. The file depends only on
        the rows, not on how they came in batches (a distributed build writes the same bytes
        as a local one)."""
        first = pa.Table.from_batches(self._buffer).slice(0, ROW_GROUP_ROWS[1])
        per_row = max(first.nbytes / max(first.num_rows, 1), 1.0)
        low, high = ROW_GROUP_ROWS
        return int(min(max(self._target_bytes / per_row, low), high))

    def _drain(self) -> None:
        """Send every full row group to the writer thread."""
        if self._target_rows is None:
            return
        while self._buffered >= self._target_rows:
            table = pa.Table.from_batches(self._buffer)
            cut = self._cut(table)
            self._queue.put(table.slice(0, cut))
            rest = table.slice(cut)
            self._buffer = rest.to_batches()
            self._buffered = rest.num_rows

    def _cut(self, table: pa.Table) -> int:
        """Rows in the next row group: up to the last group boundary in the last three
        quarters of the target, so that a group of fewer than ¾ of the target rows always
        lies in one row group (read once, one chunk); the target where there is none."""
        target = self._target_rows or 1
        low = target // 4
        keys = table.column(self._key_column).slice(low, target - low + 1)
        starts = run_starts(keys)
        return low + int(starts[-1]) if len(starts) > 1 else target

    def close(self) -> tuple[int, int, str]:
        """Write what is left, finish the file; returns ``(rows, file bytes, sha256)``."""
        if self._buffered and self._error is None:
            if self._target_rows is None:
                self._target_rows = self._estimate()
            self._drain()
        if self._buffered and self._error is None:
            self._queue.put(pa.Table.from_batches(self._buffer))
        self._buffer, self._buffered = [], 0
        self._finish()
        if self._error is not None:
            raise self._error
        return self.num_rows, self._sink.size, self._sink.hexdigest()

    def abort(self) -> None:
        """Stop writing (after an error elsewhere); the caller removes the file."""
        self._buffer, self._buffered = [], 0
        self._finish()

    def _finish(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        try:
            self._writer.close()
        finally:
            self._sink.close()

    def _work(self) -> None:
        while (table := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain: the main thread will raise the error
            try:
                # One chunk per column: pages are cut by size, not at the input's batches.
                table = table.combine_chunks()
                self._writer.write_table(table, row_group_size=table.num_rows)
            except BaseException as exc:  # re-raised by the main thread
                self._error = exc


class GroupRuns:
    """The runs of equal keys over a shard's sorted batches: the shard's index rows.

    Feed it each batch's key column with per-row bytes and words, in order; ``table()``
    returns one index row per run. A key met again after another key means the rows of a
    group were not contiguous: :meth:`table` raises then.
    """

    def __init__(self, key_type: pa.DataType) -> None:
        self.key_type = key_type
        self.keys: list[pa.Array] = []
        self.starts: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []
        self.nbytes: list[np.ndarray] = []
        self.words: list[np.ndarray] = []
        self.offset = 0
        self.last: Any = None

    def add(self, keys: pa.Array, nbytes: np.ndarray, words: np.ndarray) -> None:
        n = len(keys)
        if not n:
            return
        starts = run_starts(keys)
        lengths = np.diff(np.append(starts, n))
        run_bytes = np.add.reduceat(nbytes, starts)
        run_words = np.add.reduceat(words, starts)
        run_keys = keys.take(pa.array(starts))
        if self.last is not None and keys[0].as_py() == self.last:
            # The previous batch's last group continues here.
            self.lengths[-1][-1] += lengths[0]
            self.nbytes[-1][-1] += run_bytes[0]
            self.words[-1][-1] += run_words[0]
            starts, lengths = starts[1:], lengths[1:]
            run_bytes, run_words, run_keys = run_bytes[1:], run_words[1:], run_keys.slice(1)
        self.offset += n
        self.last = keys[n - 1].as_py()
        if not len(starts):
            return
        self.keys.append(run_keys)
        self.starts.append(starts + self.offset - n)
        self.lengths.append(lengths)
        self.nbytes.append(run_bytes)
        self.words.append(run_words)

    def table(self, shard: int) -> pa.Table:
        """The index rows of shard ``shard``; raises if a group's rows were not contiguous."""
        offsets = _cat(self.starts)
        keys = pa.concat_arrays(self.keys) if self.keys else pa.array([], self.key_type)
        if pc.count_distinct(keys).as_py() != len(keys):
            raise GroupArrowError(
                f"the rows of a group of shard {shard} did not come out contiguous: two keys "
                "share their 128-bit placement hash (an MD5 collision, which only a crafted "
                "input makes) or this is a bug to report with your DuckDB and PyArrow "
                "versions; building with another seed= avoids a collision"
            )
        return pa.Table.from_arrays(
            [
                keys.cast(self.key_type),
                pa.array(np.full(len(offsets), shard, np.int32)),
                pa.array(offsets),
                pa.array(_cat(self.lengths)),
                pa.array(_cat(self.nbytes)),
                pa.array(_cat(self.words)),
            ],
            schema=index_schema(self.key_type),
        )


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


class HashingFile:
    """A write-only file that computes its SHA-256 and size as it is written."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 - closed by close()
        self._hash = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._hash.update(view)
        self._file.write(view)
        self.size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self.closed = True

    def writable(self) -> bool:
        return True

    def hexdigest(self) -> str:
        return self._hash.hexdigest()
