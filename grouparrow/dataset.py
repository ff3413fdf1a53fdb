"""Reading a grouped dataset: streaming groups, random access by key.

Example:
    >>> import grouparrow as ga, pyarrow as pa, tempfile
    >>> out = tempfile.mkdtemp() + "/ds"
    >>> _ = ga.build(pa.table({"user": ["a", "b", "a"], "x": [1, 2, 3]}), key="user", output=out)
    >>> ds = ga.open(out)
    >>> ds["a"].to_pylist()
    [{'group_id': 'a', 'user': 'a', 'x': 1}, {'group_id': 'a', 'user': 'a', 'x': 3}]
    >>> sorted(g.id for g in ds.iter_groups(shuffle=True, seed=1))
    ['a', 'b']

A dataset on an object store opens the same way, ``ga.open("s3://bucket/ds",
storage_options={...})`` (see :mod:`grouparrow.storage`): the manifest is read whole, the
index one shard's row group at a time, and a group's fetch reads its row groups only.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import json
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from grouparrow import _arrow
from grouparrow import query as _query
from grouparrow import statistics as _stats
from grouparrow._shards import (
    READ_ERRORS,
    ArrowCache,
    ParquetShards,
    default_cache_dir,
    open_checked,
    remember,
)
from grouparrow._splits import check_fraction, check_seed, group_mask, row_mask
from grouparrow._streams import GroupStream, Segment, windows
from grouparrow.adapters._columns import check_columns
from grouparrow.errors import (
    CorruptDatasetError,
    FormatError,
    GroupArrowError,
    GroupNotFoundError,
)
from grouparrow.format import Manifest, index_schema, open_manifest, replaced_error
from grouparrow.group import Group, GroupId
from grouparrow.keys import composite_id, shard_of
from grouparrow.storage import Storage

if TYPE_CHECKING:
    import duckdb
    import polars as pl

#: Groups of more Arrow bytes than this are read only when their rows are asked for.
LARGE_GROUP_BYTES = 64 * 2**20
_EMPTY_BATCH = pa.record_batch({})


class GroupedDataset:
    """A grouped dataset: a manifest, an index and group-clustered Parquet shards, in a local
    directory or on any fsspec filesystem.

    Open one with :func:`grouparrow.open`. ``storage`` is where it lives
    (:class:`~grouparrow.storage.Storage`), ``uri`` that place as text (a URI, or a local
    dataset's absolute path) and ``path`` a local dataset's directory as a ``Path`` (an
    error for a remote dataset, which has none: use ``uri``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | Storage,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(path, Storage):
            self.storage = path
            self._path = path.root_path if path.local else None
        else:
            self.storage = Storage.at(path, storage_options)
            self._path = Path(str(path).removeprefix("file://")) if self.storage.local else None
        self.manifest: Manifest
        self.manifest, self._stamp = open_manifest(self.storage)
        counts = [s.num_groups for s in self.manifest.shards]
        self._group_starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        self._parquet = ParquetShards(self.storage, self.manifest, self._stamp)
        self._files_checked = -1  # the process that checked every file (for SQL), if any
        self._shards: ParquetShards | ArrowCache = self._parquet
        # The whole index once read, kept: for a remote dataset read from a local cache, so
        # that nothing but the cache is read after the first use.
        self._whole_index: pa.Table | None = None
        self._keep_index = False
        if cache_dir is not None:
            self._shards = ArrowCache(self._parquet, cache_dir)
            self._keep_index = not self.storage.local
        self._lookups: OrderedDict[int, dict[Any, int]] = OrderedDict()
        self._index_parts: OrderedDict[int, pa.Table] = OrderedDict()
        self._composite = self.manifest.key.get("kind") == "composite"
        # Views made by split_groups / split_rows: (fraction, seed, eval side) each.
        self._group_splits: tuple[tuple[float, int, bool], ...] = ()
        self._row_splits: tuple[tuple[float, int, bool], ...] = ()
        self._selected: dict[int, np.ndarray] = {}
        self._cohort_table: pa.Table | None = None
        self._queries = _query.Connections()

    def __repr__(self) -> str:
        splits = [f"split_groups{s}" for s in self._group_splits]
        splits += [f"split_rows{s}" for s in self._row_splits]
        view = f", view={' '.join(splits)}" if splits else ""
        cache = f", cache_dir={str(self.cache_dir)!r}" if self.cache_dir else ""
        return (
            f"GroupedDataset({self._where!r}, num_groups={self.num_groups:,}, "
            f"num_rows={self.num_rows:,}, num_shards={self.num_shards}{view}{cache})"
        )

    def __getstate__(self) -> dict[str, Any]:
        # Pickled for DataLoader workers and the like: open files and caches stay behind.
        state = {k: v for k, v in self.__dict__.items() if k != "_index_opened"}
        return {**state, "_lookups": OrderedDict(), "_index_parts": OrderedDict()}

    # -- where ------------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        """The dataset's local directory (a :class:`GroupArrowError` for a remote dataset:
        use :attr:`uri`, or :attr:`storage` to read its files)."""
        if self._path is None:
            raise GroupArrowError(
                f"{self.uri!r} is not on the local disk, so it has no path; use ds.uri "
                "(its URI) or ds.storage (to read its files)"
            )
        return self._path

    @property
    def uri(self) -> str:
        """Where the dataset is, as text: its URI (``s3://bucket/ds``), or a local dataset's
        absolute path."""
        return self.storage.uri

    @property
    def _where(self) -> str:
        """The dataset as its user named it, for messages."""
        return str(self._path) if self._path is not None else self.uri

    # -- Arrow cache ------------------------------------------------------------------------
    @property
    def cache_dir(self) -> Path | None:
        """Where shards are read from as Arrow IPC (see :meth:`cache`), or ``None``."""
        return self._shards.directory if isinstance(self._shards, ArrowCache) else None

    def cache(self, cache_dir: str | os.PathLike[str] | None = None) -> GroupedDataset:
        """This dataset read from a local Arrow IPC cache: every shard written once (now,
        if not cached already) as an uncompressed Arrow file and then memory-mapped, so
        streaming and random access neither decompress nor copy.

        The cache lives in ``cache_dir`` (default ``$GROUPARROW_CACHE``, else
        ``~/.cache/grouparrow``), one file per shard named by the shard's checksum in the
        manifest: a rebuilt dataset never reads stale files, and a shard whose bytes do not
        match its checksum is refused (:class:`CorruptDatasetError`), not cached. It takes
        about as much disk as the data's Arrow size (``ds.manifest.num_bytes``); delete the
        directory to reclaim it. ``grouparrow.open(path, cache_dir=...)`` caches each shard
        on first use instead.

        A remote dataset's shards are downloaded once each, and its index is read whole and
        kept in memory: streaming, fetches and sampling then read nothing remote (SQL still
        reads the remote shards).

        Example:
            >>> fast = ds.cache()                        # doctest: +SKIP
            >>> fast["nytimes.com"].num_rows              # doctest: +SKIP
            12
        """
        directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        view = copy.copy(self)
        view._shards = ArrowCache(self._parquet, directory)
        for shard in range(self.num_shards):
            view._shards.ensure(shard)
        if not self.storage.local:
            view._keep_index = True
            view._whole_index = self._read_whole_index()
            view._index_parts = OrderedDict()
        return view

    # -- metadata ---------------------------------------------------------------------------
    @property
    def num_groups(self) -> int:
        """Groups in this dataset (in this side of a :meth:`split_groups` view)."""
        if not self._group_splits:
            return self.manifest.num_groups
        return sum(int(self._selection(s).sum()) for s in range(self.num_shards))

    @property
    def num_rows(self) -> int:
        """Rows in this dataset (in this side of a split view)."""
        if not self._group_splits and not self._row_splits:
            return self.manifest.num_rows
        total = 0
        for shard in range(self.num_shards):
            part = self.shard_index(shard)
            sizes = part.column("num_rows").to_numpy()
            if self._row_splits and len(sizes):
                kept = self._row_selection(part.column("group_id").to_pylist(), sizes)
                sizes = np.add.reduceat(kept, np.cumsum(sizes) - sizes)
            total += int(sizes[self._selection(shard)].sum())
        return total

    @property
    def num_shards(self) -> int:
        return self.manifest.num_shards

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema of the rows: the key column first, then the source columns."""
        return self.manifest.schema

    @property
    def key_column(self) -> str:
        return self.manifest.key_column

    def __len__(self) -> int:
        return self.num_groups

    @property
    def _index_location(self) -> str:
        return self.storage.url(self.manifest.index)

    @property
    def _index_file(self) -> pq.ParquetFile:
        """The index file, opened once per process (a forked process reopens a remote
        one: the parent's filesystem does not work there)."""
        opened = self.__dict__.get("_index_opened")
        if opened is None or opened[0] != os.getpid():
            opened = self.__dict__["_index_opened"] = (os.getpid(), self._open_index())
        return opened[1]

    def _open_index(self) -> pq.ParquetFile:
        """Open and check the index file: its size and, locally, its SHA-256 (the whole file,
        read once per process), remotely the checksum of its tail (footer, page index)
        against what the manifest records; its row count and schema. Its pages' CRC-32 are
        checked as they are read. An index rewritten since the dataset was opened, for the
        same shards (``compute_stats``), is checked against the manifest that lists it."""
        changed: list[tuple[Manifest, Any]] = []

        def current() -> None:
            if self.storage.local and (now := self._parquet.changed()) is not None:
                changed.append(now)

        try:
            return self._check_index(self.manifest, current)
        except CorruptDatasetError as exc:
            if not changed:
                raise self._parquet.replaced_or(exc) from exc.__cause__
        manifest, stamp = changed[0]

        def same() -> None:  # still that manifest
            now = self._parquet.changed()
            if now is not None and now[1] != stamp:
                raise replaced_error(self.storage.uri)

        try:
            return self._check_index(manifest, same)
        except CorruptDatasetError as exc:
            raise self._parquet.replaced_or(exc) from exc.__cause__

    def _check_index(self, manifest: Manifest, current: Callable[[], None]) -> pq.ParquetFile:
        info = manifest.index_info
        local = self.storage.local
        return open_checked(
            self.storage,
            manifest.index,
            self.storage.url(manifest.index),
            file_bytes=None if info is None else info.file_bytes,
            tail_bytes=0 if info is None else info.tail_bytes,
            tail_sha256="" if info is None or local else info.tail_sha256,
            sha256="" if info is None or not local else info.sha256,
            num_rows=manifest.num_groups,
            rows_noun="groups",
            schema=index_schema(manifest.key_type, manifest.label_type),
            current=current,
        ).file

    def _index_damaged(self, exc: BaseException) -> FormatError:
        return self._parquet.replaced_or(
            CorruptDatasetError(
                f"{self._index_location} cannot be read ({exc}); the dataset is damaged: run "
                "grouparrow verify"
            )
        )

    def check_files(self) -> None:
        """Check every file of the dataset as a reader does when it opens it (sizes; the
        index's SHA-256, or remotely its tail's; each shard's tail checksum; row counts;
        schemas), without decoding data: a :class:`CorruptDatasetError` naming the first
        file that fails (a :class:`~grouparrow.format.DatasetReplacedError` if the dataset
        was rebuilt since it was opened).
        :meth:`sql` and :meth:`connect` run it once per process, since DuckDB reads the
        files itself (its scans check the pages' CRC-32 as they read them).

        Example:
            >>> ds.check_files()                                        # doctest: +SKIP
        """
        self._index_file  # noqa: B018 (opened and checked once per process)
        for shard in range(self.num_shards):
            self._parquet.open_shard(shard)
        self._files_checked = os.getpid()

    def _read_whole_index(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The whole index file (kept in memory when the dataset keeps its index)."""
        if self._whole_index is not None:
            return self._whole_index if columns is None else self._whole_index.select(columns)
        try:
            index = self._index_file.read(columns=None if self._keep_index else columns)
        except READ_ERRORS as exc:
            raise self._index_damaged(exc) from exc
        if self._keep_index:
            self._whole_index = index
            return index if columns is None else index.select(columns)
        return index

    @property
    def index(self) -> pa.Table:
        """The whole index as a ``pyarrow.Table``: one row per group, in shard order (in a
        :meth:`split_groups` view, its groups only; statistics are of whole groups).

        In a :meth:`split_rows` view (every group, some of its rows) it holds ``group_id,
        shard, offset, num_rows`` only: ``num_rows`` the group's rows in this view (counted
        from the split's hash, no shard is read; 0 for a group with none here), ``shard`` and
        ``offset`` where the whole group is stored. ``num_bytes``, ``num_words`` and label
        counts describe whole groups and are left out: compute them on the dataset the view
        came from, or from the view's groups (``ds.iter_groups()``).
        """
        index = self._read_whole_index()
        if self._group_splits:
            index = index.filter(pa.array(self._all_selected()))
        return _stats.row_view_index(self, index) if self._row_splits else index

    def group_ids(self) -> list[GroupId]:
        """Every group id, in storage order (shard by shard); tuples for composite keys."""
        ids = self._read_whole_index(["group_id"]).column(0).to_pylist()
        if self._group_splits:
            ids = [i for i, keep in zip(ids, self._all_selected(), strict=True) if keep]
        return self._decode(ids)

    def shard_index(self, shard: int) -> pa.Table:
        """The index rows of one shard, in the order its groups are stored."""
        part = self._index_parts.get(shard)
        if part is None:
            part = self._read_index_part(shard)
            remember(self._index_parts, shard, part, 8)
        return part

    def _read_index_part(self, shard: int) -> pa.Table:
        start, end = int(self._group_starts[shard]), int(self._group_starts[shard + 1])
        if self._keep_index:
            whole = self._read_whole_index()
            part = whole.select(list(self._INDEX_COLUMNS)).slice(start, end - start)
            return self._checked_part(shard, part)
        index = self._index_file
        if end == start:
            return index.schema_arrow.empty_table()
        meta = index.metadata
        row_groups, first, position = [], None, 0
        for i in range(meta.num_row_groups):
            n = meta.row_group(i).num_rows
            if position < end and position + n > start:
                row_groups.append(i)
                first = position if first is None else first
            position += n
        try:
            table = index.read_row_groups(row_groups, columns=list(self._INDEX_COLUMNS))
        except READ_ERRORS as exc:
            raise self._index_damaged(exc) from exc
        return self._checked_part(shard, table.slice(start - (first or 0), end - start))

    def _checked_part(self, shard: int, part: pa.Table) -> pa.Table:
        """A shard's index rows, if they describe its rows: the shard's number in each, and
        each group starting where the one before ends, from row 0 to the shard's last (what
        a reader relies on to cut groups; an index damaged otherwise fails its checksums)."""
        offsets = part.column("offset").to_numpy()
        ends = offsets + part.column("num_rows").to_numpy()
        shards = part.column("shard").to_numpy()
        if len(part) and not (
            offsets[0] == 0
            and ends[-1] == self.manifest.shards[shard].num_rows
            and np.array_equal(offsets[1:], ends[:-1])
            and np.all(ends > offsets)
            and np.all(shards == shard)
        ):
            raise self._parquet.replaced_or(
                CorruptDatasetError(
                    f"{self._index_location}: the groups it lists for shard {shard} do not "
                    "tile the shard's rows; the dataset is damaged: run grouparrow verify"
                )
            )
        return part

    #: What streams and lookups read of the index (not the statistics).
    _INDEX_COLUMNS = ("group_id", "shard", "offset", "num_rows", "num_bytes")

    # -- statistics and SQL -----------------------------------------------------------------
    def stats(self) -> pl.DataFrame:
        """One row per group as a Polars frame: ``group_id, shard, offset, num_rows,
        num_bytes, num_words``, and with label counts ``label_counts`` and the label
        heterogeneity ``num_labels, label_entropy`` (bits), ``label_js_distance,
        label_hellinger`` (against the label distribution of all the groups in this dataset
        or view, in [0, 1]). Read from the index: no shard is opened.

        A :meth:`split_rows` view's is its :attr:`index`: ``group_id, shard, offset,
        num_rows``, ``num_rows`` counted in the view; the other columns describe whole groups
        and are left out (compute them on the dataset the view came from).

        Example:
            >>> ds.stats().sort("num_rows", descending=True).head(3)   # doctest: +SKIP
        """
        return _stats.group_stats(self)

    def summary(self) -> pl.DataFrame:
        """The dataset table: per measure (examples, words, bytes per group; with labels,
        labels per group and the heterogeneity metrics) the groups, total, min, median,
        mean, p90, p99, max and the Gini coefficient over groups. A :meth:`split_rows` view
        has none (a :class:`~grouparrow.QueryError`: words and bytes are of whole groups);
        its rows per group are in :meth:`stats`.

        Example:
            >>> print(ds.summary())                                    # doctest: +SKIP
        """
        return _stats.summary(self)

    def label_counts(self) -> pl.DataFrame:
        """Per-group label counts in long form, ``(group_id, label, count)``: one row per
        group and label that occurs in it (a :class:`GroupArrowError` if none were
        counted: build with ``label_column=`` or call :meth:`compute_stats`). A
        :meth:`split_rows` view has none (a :class:`~grouparrow.QueryError`: the counts are
        of whole groups); count the labels of its groups (``ds.iter_groups()``).

        Example:
            >>> ds.label_counts().filter(pl.col("group_id") == "f0001_41")   # doctest: +SKIP
        """
        return _stats.label_counts(self)

    def compute_stats(self, *, label_column: str) -> GroupedDataset:
        """Count ``label_column`` per group (DuckDB, reading that column and the key) and
        store the counts in the index, atomically; returns the dataset reopened. Every group
        of the dataset is counted; called on a split view it returns the same view (the same
        splits) of the reopened dataset.

        Example:
            >>> ds = ds.compute_stats(label_column="label")            # doctest: +SKIP
        """
        reopened = _stats.compute_stats(self, label_column)
        for groups in self._group_splits:
            reopened = reopened._view(groups=groups)
        for rows in self._row_splits:
            reopened = reopened._view(rows=rows)
        return reopened

    def sql(
        self, query: str, params: Any = None, *, checked: bool = True
    ) -> duckdb.DuckDBPyRelation:
        """Run DuckDB SQL over the views ``examples`` (every row), ``groups`` (the index:
        one row per group) and, with label counts, ``labels`` (``group_id, label,
        count``), with grouparrow's macros (``ga_size_quantiles``, ``ga_gini``,
        ``ga_label_entropy``, ``ga_label_skew``, ...). Values go in ``params`` (``$name``
        or ``?`` placeholders), never into the text. Returns a DuckDB relation: ``.pl()``,
        ``.arrow()``, ``.df()``, ``.fetchall()``. A query DuckDB cannot parse or bind
        raises :class:`~grouparrow.QueryError` showing it. The dataset's files are checked
        first, once per process (:meth:`check_files`), and ``examples`` checks every page's
        CRC-32 as it reads: a damaged page fails the query with DuckDB's error naming the
        shard. ``checked=False`` reads shards with DuckDB's own, unchecked, Parquet reader:
        faster on selective queries (see :mod:`grouparrow.query`).

        Example:
            >>> ds.sql("SELECT group_id FROM groups WHERE num_rows > $n", {"n": 100}).pl()
            ...                                                        # doctest: +SKIP
        """
        if self._files_checked != os.getpid():
            self.check_files()
        return _query.run(self._queries.get(self, checked=checked), query, params)

    def connect(self, *, checked: bool = True) -> duckdb.DuckDBPyConnection:
        """A new DuckDB connection with the views and macros of :meth:`sql` (``checked`` as
        there), yours to keep.

        Example:
            >>> con = ds.connect()                                      # doctest: +SKIP
            >>> con.sql("SELECT count(*) FROM examples").fetchall()     # doctest: +SKIP
        """
        if self._files_checked != os.getpid():
            self.check_files()
        return _query.connect(self, checked=checked)

    # -- random access ----------------------------------------------------------------------
    def __contains__(self, group_id: object) -> bool:
        try:
            self._locate(group_id)
        except GroupNotFoundError:
            return False
        return True

    def __getitem__(self, group_id: GroupId) -> Group:
        """One group by id; reads only the row groups that hold it (a large group: when its
        rows are asked for, see :meth:`Group.iter_batches`)."""
        return self.get_many([group_id])[0]

    def get(self, group_id: GroupId, default: Any = None) -> Group | Any:
        """The group with this id, or ``default`` when there is none."""
        try:
            return self[group_id]
        except GroupNotFoundError:
            return default

    def _locate(self, group_id: object) -> tuple[int, int]:
        asked = group_id  # as the caller named it, for the messages
        if self._composite and isinstance(group_id, (tuple, list)):
            try:
                group_id = composite_id(group_id)
            except TypeError as exc:
                raise GroupNotFoundError(f"no group {group_id!r}: {exc}") from None
        if isinstance(group_id, pa.Scalar):
            group_id = group_id.as_py()
        elif isinstance(group_id, np.integer):
            group_id = int(group_id)
        elif isinstance(group_id, np.str_):
            group_id = str(group_id)
        if not isinstance(group_id, (str, bytes, int)) or isinstance(group_id, bool):
            raise GroupNotFoundError(
                f"no group {group_id!r}: group ids of this dataset are {self.manifest.key_type}"
            )
        try:
            shard = shard_of(group_id, self.manifest.seed, self.num_shards)
        except TypeError:
            shard = 0
        lookup = self._lookups.get(shard)
        if lookup is None:
            ids = self.shard_index(shard).column("group_id").to_pylist()
            lookup = {gid: i for i, gid in enumerate(ids)}
            remember(self._lookups, shard, lookup, 8)
        row = lookup.get(group_id)
        if row is None:
            raise GroupNotFoundError(
                f"no group {asked!r} in {self._where!r} "
                f"({self.manifest.num_groups:,} groups, keys of type {self.manifest.key_type})"
            )
        if self._group_splits and not self._selection(shard)[row]:
            raise GroupNotFoundError(
                f"group {asked!r} is in the other side of this split_groups() view"
            )
        return shard, row

    def _read_spans(
        self, shard: int, spans: Sequence[tuple[int, int]]
    ) -> list[list[pa.RecordBatch]]:
        """The rows ``offset .. offset + num_rows`` of a shard for each span, reading every
        row group needed once."""
        starts = self._shards.starts(shard)
        parts: dict[int, pa.RecordBatch] = {}
        out = []
        for offset, num_rows in spans:
            part = bisect.bisect_right(starts, offset) - 1
            pieces = []
            while num_rows > 0:
                if part not in parts:
                    parts[part] = self._shards.read(shard, part)
                take = min(num_rows, starts[part + 1] - offset)
                pieces.append(parts[part].slice(offset - starts[part], take))
                offset, num_rows, part = offset + take, num_rows - take, part + 1
            out.append(pieces or [_arrow.empty_batch(self.schema)])
        return out

    def get_many(self, group_ids: Iterable[GroupId]) -> list[Group]:
        """Several groups by id, in the order asked, reading each shard touched once (the
        row groups holding any of them).

        Example:
            >>> [g.num_rows for g in ds.get_many(["ann", "bob"])]   # doctest: +SKIP
            [2, 1]
        """
        if isinstance(group_ids, (str, bytes)):
            raise TypeError(
                f"get_many({group_ids!r}) takes a list of group ids, not one id (its "
                f"characters would be read as ids): pass [{group_ids!r}], or use "
                f"ds[{group_ids!r}] for one group"
            )
        wanted = list(group_ids)
        located = []
        for gid in wanted:
            try:
                located.append(self._locate(gid))
            except GroupNotFoundError as exc:  # a composite id of the wrong shape: say so
                if not self._composite:
                    raise
                from grouparrow.keys import composite_id_problem

                problem = composite_id_problem(gid, self.manifest.key.get("definition", ""))
                if problem is None:
                    raise
                raise GroupNotFoundError(problem) from exc
        by_shard: dict[int, list[int]] = {}
        for n, (shard, _) in enumerate(located):
            by_shard.setdefault(shard, []).append(n)
        out: list[Group | None] = [None] * len(wanted)
        for shard, members in by_shard.items():
            part = self.shard_index(shard)
            rows = [located[n][1] for n in members]
            offsets = part.column("offset").take(rows).to_pylist()
            counts = part.column("num_rows").take(rows).to_pylist()
            large = (part.column("num_bytes").take(rows).to_numpy() > LARGE_GROUP_BYTES).tolist()
            # The ids as stored (not as asked: a NumPy integer, a list) name the groups and
            # salt their split_rows hash.
            ids = self._decode(part.column("group_id").take(rows).to_pylist())
            spans = [(o, c) for o, c, big in zip(offsets, counts, large, strict=True) if not big]
            read = iter(self._read_spans(shard, spans))
            for n, gid, offset, count, big in zip(
                members, ids, offsets, counts, large, strict=True
            ):
                if big:
                    group = self._lazy(gid, shard, offset, count, None, self.schema)
                else:
                    group = Group(gid, next(read), self.schema, count)
                out[n] = self._row_split(group)
        return [g for g in out if g is not None]

    # -- cohorts ----------------------------------------------------------------------------
    def sample(
        self,
        k: int,
        *,
        seed: int = 0,
        weights: str | None = None,
        replace: bool = False,
    ) -> list[Group]:
        """A cohort of ``k`` groups drawn with ``seed`` (an integer >= 0): uniformly, or with
        probability proportional to an index column (``weights="num_rows"``, ``"num_bytes"``,
        ``"num_words"``); without replacement unless ``replace=True``. The same seed gives
        the same cohort. Groups are read with :meth:`get_many`.

        In a :meth:`split_rows` view the weights are the groups' rows in the view (only
        ``"num_rows"`` is known there), so a group with no rows in it is never drawn; drawn
        uniformly, every group may be, as :meth:`iter_groups` yields every group (some
        empty).

        Example:
            >>> cohort = ds.sample(10, seed=0, weights="num_rows")   # doctest: +SKIP
        """
        rng = np.random.default_rng(check_seed(seed))
        return self.get_many(self._choose(k, rng, weights, replace))

    def cohorts(
        self,
        k: int,
        *,
        seed: int = 0,
        weights: str | None = None,
        replace: bool = False,
        start: int = 0,
    ) -> Iterator[list[Group]]:
        """One cohort per round, forever: round ``r`` is drawn from ``(seed, r)``, so a job
        restarted at round ``r`` resumes with ``start=r`` and gets the same cohorts. Cohorts
        are drawn as by :meth:`sample` (its notes on weights and views hold); ``seed`` and
        ``start`` are checked at the call.

        Example:
            >>> for round, cohort in zip(range(100), ds.cohorts(10, seed=0)):   # doctest: +SKIP
            ...     train(cohort)
        """
        seed = check_seed(seed)
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ValueError(f"start={start!r} must be an integer >= 0")

        def rounds() -> Iterator[list[Group]]:
            for round_ in itertools.count(start):
                rng = np.random.default_rng([seed, round_])
                yield self.get_many(self._choose(k, rng, weights, replace))

        return rounds()

    def _choose(
        self, k: int, rng: np.random.Generator, weights: str | None, replace: bool
    ) -> list[GroupId]:
        index = self._cohort_index()
        n = index.num_rows
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"k={k!r} must be an integer >= 0")
        if not replace and k > n:
            raise ValueError(f"k={k} is more than the {n} groups; pass replace=True or a smaller k")
        p = None
        if weights is not None:
            if self._row_splits and weights != "num_rows":
                raise ValueError(
                    f"weights={weights!r} is not known in a split_rows() view (it describes "
                    "whole groups); use weights='num_rows' (the groups' rows in this view) "
                    "or None, or sample the dataset the view came from"
                )
            numeric = [f.name for f in index.schema if pa.types.is_integer(f.type)]
            numeric = [c for c in numeric if c != "group_id" and c != "offset"]
            if weights not in numeric:
                raise ValueError(f"weights={weights!r} is not one of {numeric} (or None)")
            w = index.column(weights).to_numpy().astype(np.float64)
            if not w.sum() > 0:
                raise ValueError(f"weights={weights!r} sum to zero")
            drawable = int(np.count_nonzero(w))
            if not replace and k > drawable:
                raise ValueError(
                    f"k={k} is more than the {drawable} groups of nonzero weights={weights!r}; "
                    "pass replace=True or a smaller k"
                )
            p = w / w.sum()
        chosen = rng.choice(n, size=k, replace=replace, p=p) if n else np.zeros(0, np.int64)
        return self._decode(index.column("group_id").take(chosen).to_pylist())

    def _cohort_index(self) -> pa.Table:
        if self._cohort_table is None:
            self._cohort_table = self.index
        return self._cohort_table

    # -- streaming --------------------------------------------------------------------------
    def iter_groups(
        self,
        *,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        start: int = 0,
        worker_index: int = 0,
        num_workers: int = 1,
        columns: Sequence[str] | None = None,
    ) -> GroupStream:
        """Every group once (one epoch), streamed shard by shard as zero-copy slices of
        decoded batches.

        With ``shuffle=True`` the order of shards and the group each shard starts at are
        drawn from ``(seed, epoch)``, and the groups are permuted within windows of
        consecutive groups of ~8 MiB (``grouparrow._streams.WINDOW_BYTES``; decoded together
        anyway, so this costs no extra reads): each epoch has its own order and its own
        neighbours, and the same seed and epoch repeat. (A window is not the whole dataset:
        for cohorts drawn from all groups use :meth:`sample` or :meth:`cohorts`.) With
        ``num_workers`` (data-loader workers, hosts) each shard's groups are cut into
        contiguous ranges and ``worker_index`` streams only its own: the workers together
        see every group exactly once. ``start`` skips the first groups without reading them;
        the returned :class:`GroupStream` has ``state_dict()`` to resume where it stopped
        (``ds.iter_groups(**state)``). ``columns`` reads only those columns.

        Example:
            >>> stream = ds.iter_groups(shuffle=True, seed=0, epoch=1)   # doctest: +SKIP
            >>> group = next(stream); stream.state_dict()["start"]       # doctest: +SKIP
            1
        """
        return GroupStream(
            [s.num_groups for s in self.manifest.shards],
            self._count_in,
            self._stream,
            shuffle=shuffle,
            seed=seed,
            epoch=epoch,
            start=start,
            worker_index=worker_index,
            num_workers=num_workers,
            columns=None if columns is None else check_columns(self.schema, columns),
        )

    def _count_in(self, segment: Segment) -> int:
        """Groups of this view in a segment."""
        if not self._group_splits:
            return segment.end - segment.first
        return int(self._selection(segment.shard)[segment.first : segment.end].sum())

    #: Dataset Grouper's name for the stream of groups.
    build_group_stream = iter_groups

    def __iter__(self) -> Iterator[Group]:
        return self.iter_groups()

    def _stream(
        self, segment: Segment, skip: int, config: dict[str, Any], columns: list[str] | None
    ) -> Iterator[Group]:
        """The groups of this view in ``segment`` less the first ``skip``: in storage
        order, or with ``config["shuffle"]`` permuted within windows of a few MiB (drawn from
        the seed, the epoch and where the segment starts), reading from the window of the
        first group it yields."""
        shard, first, end = segment.shard, segment.first, segment.end
        part = self.shard_index(shard).slice(first, end - first)
        if self._group_splits:
            part = part.filter(pa.array(self._selection(shard)[first:end]))
        if not config["shuffle"]:
            return self._groups_of(shard, part.slice(skip), columns)
        bounds = windows(part.column("num_bytes").to_numpy())
        window = int(np.searchsorted(bounds, skip, side="right")) - 1
        seed = [config["seed"], config["epoch"], shard, first]
        groups = self._shuffled(shard, part, columns, bounds, window, skip, seed)
        return map(self._row_split, groups) if self._row_splits else groups

    def _groups_of(self, shard: int, part: pa.Table, columns: list[str] | None) -> Iterator[Group]:
        """The groups of index rows ``part`` of a shard, in storage order."""
        groups = self._scan(shard, part, columns)
        if not self._row_splits:
            return groups  # not wrapped: one generator less to pass through per group
        return self._rows_kept(part, groups)

    def _shuffled(
        self,
        shard: int,
        part: pa.Table,
        columns: list[str] | None,
        bounds: np.ndarray,
        window: int,
        skip: int,
        seed: list[int],
    ) -> Iterator[Group]:
        """The groups of index rows ``part`` of a shard from window ``window`` on (``bounds``
        from :func:`windows`), each window's in an order drawn from ``seed`` and its number,
        less the first ``skip`` groups of the part. The row groups under a window are
        decoded in order (as :meth:`_scan` does) and held while its groups are sliced out of
        them; a large group is a window of its own, handed out lazily."""
        ids = self._decode(part.column("group_id").to_pylist())
        offsets = part.column("offset").to_numpy().tolist()
        counts = part.column("num_rows").to_numpy().tolist()
        large = part.column("num_bytes").to_numpy() > LARGE_GROUP_BYTES
        starts = self._shards.starts(shard)
        names = list(columns) if columns is not None else None
        schema = self.schema if names is None else pa.schema([self.schema.field(n) for n in names])
        end = bisect.bisect_right(starts, offsets[-1] + max(counts[-1], 1) - 1)
        held: list[pa.RecordBatch] = []  # decoded batches; held_at: the row each starts at
        held_at: list[int] = []
        parts: Iterator[pa.RecordBatch] | None = None
        at = 0  # the row the scan's next batch starts at
        for number in range(window, len(bounds) - 1):
            lo, hi = int(bounds[number]), int(bounds[number + 1])
            drop = skip - lo if number == window else 0
            if hi - lo == 1 and large[lo]:
                yield self._lazy(ids[lo], shard, offsets[lo], counts[lo], names, schema)
                held, held_at, parts = [], [], None  # the next window starts a new scan
                continue
            first_row, end_row = offsets[lo], offsets[hi - 1] + counts[hi - 1]
            while held and held_at[0] + held[0].num_rows <= first_row:
                del held[0], held_at[0]  # rows of the windows before
            rg = bisect.bisect_right(starts, first_row) - 1
            if parts is None or rg > bisect.bisect_right(starts, at) - 1:
                # Fresh, or whole row groups to skip: (re)start the scan there.
                parts = self._shards.scan(shard, rg, end, names)
                held, held_at, at = [], [], starts[rg]
            while at < end_row:
                batch = next(parts)
                if at + batch.num_rows > first_row:
                    held.append(batch)
                    held_at.append(at)
                at += batch.num_rows
            order = np.random.default_rng([*seed, number]).permutation(hi - lo)
            for n in (order[drop:] + lo).tolist():
                pieces = _pieces(held, held_at, offsets[n], counts[n])
                yield Group(ids[n], pieces, schema, counts[n])

    def _rows_kept(self, part: pa.Table, groups: Iterator[Group]) -> Iterator[Group]:
        """``groups`` (of index rows ``part``) with the rows of this row split only."""
        # Each group keeps some of its rows (a copy); the masks of all at once.
        sizes = part.column("num_rows").to_numpy()
        mask = self._row_selection(part.column("group_id").to_pylist(), sizes)
        position = 0
        for group in groups:
            kept = mask[position : position + group.num_rows]
            position += group.num_rows
            yield group._take(kept)

    def _scan(self, shard: int, part: pa.Table, columns: Sequence[str] | None) -> Iterator[Group]:
        """The groups of index rows ``part`` of a shard, read row group by row group (a
        large group as a lazy :class:`Group` that reads its own row groups when asked)."""
        ids = self._decode(part.column("group_id").to_pylist())
        offsets = part.column("offset").to_numpy().tolist()
        counts = part.column("num_rows").to_numpy().tolist()
        large = set(np.flatnonzero(part.column("num_bytes").to_numpy() > LARGE_GROUP_BYTES))
        if not ids:
            return
        starts = self._shards.starts(shard)
        names = list(columns) if columns is not None else None
        schema = self.schema if names is None else pa.schema([self.schema.field(n) for n in names])
        end = bisect.bisect_right(starts, offsets[-1] + max(counts[-1], 1) - 1)
        parts: Iterator[pa.RecordBatch] = iter(())
        batch, lo, hi = _EMPTY_BATCH, 0, 0
        for n, (gid, offset, count) in enumerate(zip(ids, offsets, counts, strict=True)):
            if lo <= offset and offset + count <= hi:  # the common case: inside this batch
                yield Group(gid, [batch.slice(offset - lo, count)], schema, count)
                continue
            if n in large:
                yield self._lazy(gid, shard, offset, count, names, schema)
                hi = 0  # the next group starts a new scan where it lies
                continue
            pieces = []
            total = count
            while count > 0:
                while offset >= hi:
                    rg = bisect.bisect_right(starts, offset) - 1
                    if hi == 0 or rg > bisect.bisect_right(starts, hi) - 1:
                        # Fresh, or whole row groups to skip: (re)start the scan there.
                        parts = self._shards.scan(shard, rg, end, names)
                        hi = starts[rg]
                    batch = next(parts)
                    lo, hi = hi, hi + batch.num_rows
                take = min(count, hi - offset)
                pieces.append(batch.slice(offset - lo, take))
                offset += take
                count -= take
            yield Group(gid, pieces, schema, total)

    def _lazy(
        self,
        gid: GroupId,
        shard: int,
        offset: int,
        count: int,
        columns: list[str] | None,
        schema: pa.Schema,
    ) -> Group:
        """A group read only when asked for, row group by row group."""

        def batches() -> Iterator[pa.RecordBatch]:
            starts = self._shards.starts(shard)
            first = bisect.bisect_right(starts, offset) - 1
            end = bisect.bisect_right(starts, offset + count - 1)
            position = starts[first]
            for batch in self._shards.scan(shard, first, end, columns):
                lo = max(offset, position)
                hi = min(offset + count, position + batch.num_rows)
                yield batch.slice(lo - position, hi - lo)
                position += batch.num_rows

        return Group.lazy(gid, batches, schema, count)

    # -- splits -----------------------------------------------------------------------------
    def split_groups(
        self, fraction: float, *, seed: int = 0
    ) -> tuple[GroupedDataset, GroupedDataset]:
        """Held-out groups: ``(train, eval)`` views with disjoint groups, a group in eval when
        a hash of ``(seed, group id)`` falls in the first ``fraction`` of its range (so
        about ``fraction`` of the groups, the same ones in any dataset with those ids).
        Nothing is rewritten; views split again (``train.split_groups(0.1, seed=1)``).

        Example:
            >>> train, test = ds.split_groups(0.1, seed=0)   # doctest: +SKIP
            >>> set(train.group_ids()).isdisjoint(test.group_ids())   # doctest: +SKIP
            True
        """
        fraction = check_fraction(fraction, seed)
        return (
            self._view(groups=(fraction, seed, False)),
            self._view(groups=(fraction, seed, True)),
        )

    def split_rows(
        self, fraction: float, *, seed: int = 0
    ) -> tuple[GroupedDataset, GroupedDataset]:
        """Within-group split for personalization: ``(train, eval)`` views holding every
        group, each with the rows whose hash of ``(seed, group id, position in the group)``
        falls outside / inside the first ``fraction`` (as :meth:`Group.split`). A group may
        be empty on one side; groups come in the same order on both sides.

        Example:
            >>> fit, held = ds.split_rows(0.2, seed=0)   # doctest: +SKIP
            >>> fit["ann"].num_rows + held["ann"].num_rows == ds["ann"].num_rows   # doctest: +SKIP
            True
        """
        fraction = check_fraction(fraction, seed)
        return self._view(rows=(fraction, seed, False)), self._view(rows=(fraction, seed, True))

    def _view(
        self,
        groups: tuple[float, int, bool] | None = None,
        rows: tuple[float, int, bool] | None = None,
    ) -> GroupedDataset:
        view = copy.copy(self)
        view._queries = _query.Connections()
        view._cohort_table = None  # the index sampled from: of this view's groups and rows
        if groups is not None:
            view._group_splits = (*self._group_splits, groups)
            view._selected = {}
        if rows is not None:
            view._row_splits = (*self._row_splits, rows)
        return view

    def _selection(self, shard: int) -> np.ndarray:
        """Which groups of a shard (in storage order) this view holds."""
        mask = self._selected.get(shard)
        if mask is None:
            ids = self.shard_index(shard).column("group_id").to_pylist()
            mask = np.ones(len(ids), dtype=bool)
            for fraction, seed, side in self._group_splits:
                mask &= group_mask(ids, fraction, seed) == side
            self._selected[shard] = mask
        return mask

    def _all_selected(self) -> np.ndarray:
        masks = [self._selection(s) for s in range(self.num_shards)]
        return np.concatenate(masks) if masks else np.zeros(0, dtype=bool)

    def _row_selection(self, ids: Sequence[GroupId], sizes: np.ndarray) -> np.ndarray:
        """Which rows of groups ``ids`` (of ``sizes`` rows, end to end) this view holds."""
        mask = np.ones(int(np.sum(sizes)), dtype=bool)
        for fraction, seed, side in self._row_splits:
            mask &= row_mask(ids, sizes, fraction, seed) == side
        return mask

    def _row_split(self, group: Group) -> Group:
        """``group`` with the rows of this view (all but in a :meth:`split_rows` view)."""
        if not self._row_splits:
            return group
        return group._take(self._row_selection([group.id], np.array([group.num_rows])))

    def _decode(self, ids: list[Any]) -> list[GroupId]:
        """Stored ids as users see them: composite keys' JSON text as tuples."""
        return [tuple(json.loads(i)) for i in ids] if self._composite else ids


def _pieces(
    batches: list[pa.RecordBatch], at: list[int], offset: int, count: int
) -> list[pa.RecordBatch]:
    """Rows ``offset .. offset + count - 1`` of consecutive ``batches`` (``at``: the row each
    starts at) as zero-copy slices, one per batch they touch."""
    k = bisect.bisect_right(at, offset) - 1
    out = []
    while count > 0:
        take = min(count, at[k] + batches[k].num_rows - offset)
        out.append(batches[k].slice(offset - at[k], take))
        offset, count, k = offset + take, count - take, k + 1
    return out


def open(
    path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> GroupedDataset:
    """Open the grouped dataset at ``path``: a directory written by
    :func:`grouparrow.build`, or a URI of any fsspec filesystem (``s3://bucket/ds``,
    ``gs://...``, ``memory://...``), its credentials and endpoint in ``storage_options``
    (passed to the filesystem as they are; see :mod:`grouparrow.storage`).

    Opening reads the manifest only; the index is read a shard's part at a time as groups
    are asked for. With ``cache_dir``, shards are read from a local Arrow IPC cache there,
    each shard written to it the first time it is read (see :meth:`GroupedDataset.cache`).

    Example:
        >>> ds = grouparrow.open("out/fedc4-sample")   # doctest: +SKIP
        >>> ds.num_groups                              # doctest: +SKIP
        998
        >>> ds = grouparrow.open("s3://bucket/fedc4", storage_options={"anon": True})
        ...                                            # doctest: +SKIP
    """
    return GroupedDataset(path, cache_dir=cache_dir, storage_options=storage_options)


#: Dataset Grouper's name for a grouped dataset.
PartitionedDataset = GroupedDataset
