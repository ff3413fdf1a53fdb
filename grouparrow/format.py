"""The on-disk format (version 1): manifest, index and shard files. See FORMAT.md.

Example:
    >>> shard_file(3, 8)
    'data/shard-00003-of-00008.parquet'
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from grouparrow.errors import CorruptDatasetError, DatasetReplacedError, FormatError
from grouparrow.storage import Storage, is_uri

FORMAT_NAME = "grouparrow"
FORMAT_VERSION = 1
MANIFEST = "grouparrow.json"
INDEX = "index.parquet"
DATA_DIR = "data"
_CHUNK = 4 * 2**20
#: The largest manifest read (a manifest lists ~300 bytes per shard): a bigger file is not one.
MAX_MANIFEST_BYTES = 256 * 2**20
#: The manifest's own checksum: the SHA-256 of its text with these 64 hex digits zeroed.
CHECKSUM_FIELD = "manifest_sha256"
_CHECKSUM = re.compile(r'"manifest_sha256"\s*:\s*"([0-9a-f]{64})"')
_HEX64 = re.compile(r"[0-9a-f]{64}")
#: The fields of a manifest written before manifests carried their own checksum: such a
#: manifest is accepted without one only if it has no other field (a damaged
#: ``"manifest_sha256"`` name would otherwise pass for an old manifest).
LEGACY_FIELDS = frozenset(
    {
        "format",
        "format_version",
        "grouparrow_version",
        "created_at",
        "num_groups",
        "num_rows",
        "num_bytes",
        "key",
        "seed",
        "sharding",
        "schema",
        "arrow_schema",
        "index",
        "shards",
        "stats",
        "source",
        "build",
    }
)

#: Columns of index.parquet after ``group_id`` (whose type is the key's type).
INDEX_FIELDS = [
    pa.field("shard", pa.int32(), nullable=False),
    pa.field("offset", pa.int64(), nullable=False),
    pa.field("num_rows", pa.int64(), nullable=False),
    pa.field("num_bytes", pa.int64(), nullable=False),
    pa.field("num_words", pa.int64(), nullable=False),
]


def shard_file(shard: int, num_shards: int) -> str:
    """The path of a shard, relative to the dataset directory."""
    return f"{DATA_DIR}/shard-{shard:05d}-of-{num_shards:05d}.parquet"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, as the manifest records each shard's."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


#: The optional index column of per-group label counts (``label_column=``).
LABEL_COUNTS = "label_counts"

#: Characters a path in a manifest may not hold: Windows separators and drive colons, NUL,
#: and glob characters (DuckDB expands globs in the file lists of its views).
_UNSAFE_CHARACTERS = frozenset("\\:\0*?[]{}")


def check_relative_path(value: object, where: str, entry: str) -> str:
    """``value`` if it is a safe path of a file inside the dataset: relative, POSIX,
    normalized (no empty, ``.`` or ``..`` part), with no backslash, colon, NUL or glob
    character; else a :class:`FormatError` naming the manifest ``where`` and the ``entry``
    (a hostile manifest must not make a reader open files outside the dataset).

    Example:
        >>> check_relative_path("data/shard-00000-of-00001.parquet", "m.json", "index")
        'data/shard-00000-of-00001.parquet'
        >>> check_relative_path("../x", "m.json", "index")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        grouparrow.errors.FormatError: m.json: index is '../x', not a path inside the ...
    """
    reason = None
    if not isinstance(value, str) or not value:
        reason = "not a non-empty string"
    elif value.startswith("/"):
        reason = "an absolute path"
    elif bad := sorted(set(value) & _UNSAFE_CHARACTERS):
        reason = f"it contains {''.join(bad)!r}"
    elif any(part in ("", ".", "..") for part in value.split("/")):
        part = next(p for p in value.split("/") if p in ("", ".", ".."))
        reason = "an empty part" if not part else f"a {part!r} part"
    if reason is not None:
        raise FormatError(
            f"{where}: {entry} is {value!r}, not a path inside the dataset ({reason}); the "
            "manifest is damaged or was not written by grouparrow"
        )
    assert isinstance(value, str)
    return value


def label_counts_type(label_type: pa.DataType) -> pa.DataType:
    """``list<struct<label, count: int64>>``: a group's labels that occur, sorted, with
    their row counts (a null label sorts last)."""
    if pa.types.is_dictionary(label_type):
        label_type = label_type.value_type
    return pa.list_(
        pa.field(
            "element",  # the name Parquet gives list items: the type round-trips as is
            pa.struct([pa.field("label", label_type), pa.field("count", pa.int64(), False)]),
            nullable=False,
        )
    )


def index_schema(key_type: pa.DataType, label_type: pa.DataType | None = None) -> pa.Schema:
    """The schema of ``index.parquet`` for keys of ``key_type`` (and, with per-group label
    counts, labels of ``label_type``)."""
    fields = [pa.field("group_id", key_type, nullable=False), *INDEX_FIELDS]
    if label_type is not None:
        fields.append(pa.field(LABEL_COUNTS, label_counts_type(label_type), nullable=False))
    return pa.schema(fields)


def replaced_error(where: str) -> DatasetReplacedError:
    """The error for a reader of the dataset at ``where`` that was replaced since it was
    opened.

    Example:
        >>> print(replaced_error("out/fedc4"))  # doctest: +ELLIPSIS
        the dataset at 'out/fedc4' was replaced since it was opened (rebuilt, ...); open it again
    """
    return DatasetReplacedError(
        f"the dataset at {where!r} was replaced since it was opened (rebuilt, or its "
        "statistics recomputed); open it again"
    )


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """One shard file as the manifest records it.

    ``tail_bytes`` and ``tail_sha256`` cover the file's tail: everything after the last
    column chunk's data (the page index, the footer, its length and the magic). Readers
    check them when they open a shard; ``0`` and ``""`` in manifests written before."""

    file: str
    num_rows: int
    num_groups: int
    num_bytes: int
    file_bytes: int
    sha256: str
    tail_bytes: int = 0
    tail_sha256: str = ""


@dataclass(frozen=True, slots=True)
class IndexInfo:
    """The index file as the manifest records it: its size, SHA-256 and tail (as a
    shard's). Absent from manifests written before."""

    file_bytes: int
    sha256: str
    tail_bytes: int
    tail_sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    """The content of ``grouparrow.json``: what a reader needs and trusts."""

    schema: pa.Schema
    key_column: str
    key: dict[str, Any]
    seed: int
    num_groups: int
    num_rows: int
    num_bytes: int
    shards: tuple[ShardInfo, ...]
    source: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    build: dict[str, Any] = field(default_factory=dict)
    grouparrow_version: str = ""
    created_at: str = ""
    #: The index file, relative to the dataset root (``"index.parquet"`` in a dataset
    #: built locally; ``"<build id>/index.parquet"`` on an object store).
    index: str = INDEX
    #: The index file's size and checksums (``None``: not recorded; see :func:`seal`).
    index_info: IndexInfo | None = None

    @property
    def num_shards(self) -> int:
        return len(self.shards)

    @property
    def label_column(self) -> str | None:
        """The column whose per-group counts the index holds (``label_counts``), if any."""
        entry = self.stats.get(LABEL_COUNTS)
        return entry["column"] if entry else None

    @property
    def label_type(self) -> pa.DataType | None:
        column = self.label_column
        return None if column is None else self.schema.field(column).type

    @property
    def key_type(self) -> pa.DataType:
        return self.schema.field(self.key_column).type

    def to_json(self) -> str:
        """The manifest as JSON text, human-readable schema included, ending with its own
        checksum: ``manifest_sha256``, the SHA-256 of the text with those 64 hex digits
        written as zeros (see :func:`check_manifest_checksum`).

        Example:
            >>> text = manifest.to_json()                               # doctest: +SKIP
            >>> Manifest.from_json(text) == manifest                    # doctest: +SKIP
            True
        """
        body: dict[str, Any] = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "grouparrow_version": self.grouparrow_version,
            "created_at": self.created_at,
            "num_groups": self.num_groups,
            "num_rows": self.num_rows,
            "num_bytes": self.num_bytes,
            "key": {"column": self.key_column, "type": str(self.key_type), **self.key},
            "seed": self.seed,
            "sharding": {"hash": "md5", "num_shards": self.num_shards},
            "schema": [
                {"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in self.schema
            ],
            "arrow_schema": base64.b64encode(self.schema.serialize().to_pybytes()).decode(),
            "index": self.index,
        }
        if self.index_info is not None:
            body["index_info"] = dataclasses.asdict(self.index_info)
        body["shards"] = [_shard_json(s) for s in self.shards]
        body["stats"] = self.stats
        body["source"] = self.source
        body["build"] = self.build
        body[CHECKSUM_FIELD] = "0" * 64
        text = json.dumps(body, indent=2, sort_keys=False) + "\n"
        placeholder = list(_CHECKSUM.finditer(text))[-1]
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return text[: placeholder.start(1)] + digest + text[placeholder.end(1) :]

    @classmethod
    def from_json(cls, text: str, where: str = MANIFEST, *, checksum: bool = True) -> Manifest:
        """Parse and validate manifest JSON; ``where`` names the file in errors. A manifest
        that is not what grouparrow writes (unknown version, a missing or mistyped field, a
        negative count, a path outside the dataset, a file listed twice) is a
        :class:`FormatError`; one that fails its own checksum (``checksum``) a
        :class:`CorruptDatasetError`.

        Example:
            >>> Manifest.from_json('{"format": "grouparrow", "format_version": 9}')
            Traceback (most recent call last):
            ...
            grouparrow.errors.FormatError: grouparrow.json has format_version 9, but this ...
        """
        try:
            body = json.loads(text)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
            raise FormatError(f"{where} is not valid JSON ({exc}); the dataset is damaged") from exc
        if not isinstance(body, dict) or body.get("format") != FORMAT_NAME:
            raise FormatError(f'{where} is not a grouparrow manifest (no "format": "grouparrow")')
        version = body.get("format_version")
        if version != FORMAT_VERSION or isinstance(version, bool):
            raise FormatError(
                f"{where} has format_version {version!r}, but this grouparrow reads version "
                f"{FORMAT_VERSION}; upgrade grouparrow (pip install -U grouparrow) or rebuild "
                "the dataset with this version"
            )
        try:
            schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(body["arrow_schema"])))
            key = body["key"]
            if not isinstance(key, dict):
                raise TypeError(f'"key" is {key!r}, not an object')
            shards = body["shards"]
            if not isinstance(shards, list) or not all(isinstance(s, dict) for s in shards):
                raise TypeError('"shards" is not a list of objects')
            index_info = body.get("index_info")
            manifest = cls(
                schema=schema,
                key_column=key["column"],
                key={k: v for k, v in key.items() if k not in ("column", "type")},
                seed=body["seed"],
                num_groups=body["num_groups"],
                num_rows=body["num_rows"],
                num_bytes=body["num_bytes"],
                shards=tuple(ShardInfo(**s) for s in shards),
                source=body.get("source", {}),
                stats=body.get("stats", {}),
                build=body.get("build", {}),
                grouparrow_version=body.get("grouparrow_version", ""),
                created_at=body.get("created_at", ""),
                index=body.get("index", INDEX),
                index_info=None if index_info is None else IndexInfo(**index_info),
            )
        except (KeyError, TypeError, ValueError, OSError, pa.ArrowException) as exc:
            # (OSError: Arrow's "Invalid flatbuffers message" for a damaged arrow_schema)
            raise FormatError(f"{where} is malformed ({type(exc).__name__}: {exc})") from exc
        manifest._validate(where)
        if checksum:
            check_manifest_checksum(text, body, where)
        return manifest

    def _validate(self, where: str) -> None:
        """Types, counts, paths: a :class:`FormatError` naming ``where`` and the entry."""

        def fail(entry: str, value: object, expected: str) -> None:
            raise FormatError(
                f"{where}: {entry} is {value!r}, not {expected}; the manifest is damaged or was "
                "not written by grouparrow"
            )

        def count(entry: str, value: object) -> None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                fail(entry, value, "a count (an integer >= 0)")

        def text(entry: str, value: object) -> None:
            if not isinstance(value, str):
                fail(entry, value, "a string")

        for name in ("num_groups", "num_rows", "num_bytes"):
            count(f'"{name}"', getattr(self, name))
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            fail('"seed"', self.seed, "an integer")
        if not isinstance(self.key_column, str) or self.key_column not in self.schema.names:
            fail('"key"["column"]', self.key_column, f"a column of the schema {self.schema.names}")
        for name in ("source", "stats", "build"):
            if not isinstance(getattr(self, name), dict):
                fail(f'"{name}"', getattr(self, name), "an object")
        for name in ("grouparrow_version", "created_at"):
            text(f'"{name}"', getattr(self, name))
        labels = self.stats.get(LABEL_COUNTS)
        if labels is not None and (
            not isinstance(labels, dict) or labels.get("column") not in self.schema.names
        ):
            fail(f'"stats"["{LABEL_COUNTS}"]', labels, "the label column of the schema")
        files = {check_relative_path(self.index, where, '"index"'): '"index"'}
        checks: list[tuple[str, IndexInfo | ShardInfo]] = []
        if self.index_info is not None:
            checks.append(('"index_info"', self.index_info))
        for n, shard in enumerate(self.shards):
            entry = f'"shards"[{n}]'
            name = check_relative_path(shard.file, where, f'{entry}["file"]')
            if name in files:
                raise FormatError(
                    f'{where}: {entry}["file"] is {name!r}, which {files[name]} names too; '
                    "the manifest is damaged or was not written by grouparrow"
                )
            files[name] = f'{entry}["file"]'
            for field_name in ("num_rows", "num_groups", "num_bytes"):
                count(f'{entry}["{field_name}"]', getattr(shard, field_name))
            checks.append((entry, shard))
        for entry, info in checks:
            count(f'{entry}["file_bytes"]', info.file_bytes)
            count(f'{entry}["tail_bytes"]', info.tail_bytes)
            text(f'{entry}["sha256"]', info.sha256)
            text(f'{entry}["tail_sha256"]', info.tail_sha256)
            if info.tail_bytes > info.file_bytes:
                fail(f'{entry}["tail_bytes"]', info.tail_bytes, "at most the file's size")


def _shard_json(shard: ShardInfo) -> dict[str, Any]:
    """A shard's manifest entry (without tail fields when they were not recorded)."""
    entry = dataclasses.asdict(shard)
    if not shard.tail_sha256:
        del entry["tail_bytes"], entry["tail_sha256"]
    return entry


def check_manifest_checksum(text: str, body: dict[str, Any], where: str) -> None:
    """Check the manifest ``text`` (parsed: ``body``) against its own checksum, a
    :class:`CorruptDatasetError` naming ``where`` if it fails. The checksum is the SHA-256
    of the UTF-8 text with the 64 hex digits of its last ``"manifest_sha256": "..."`` pair
    written as zeros. A manifest without one (written before) is accepted if it has only
    the fields of those manifests.

    Example:
        >>> check_manifest_checksum('{"format": "grouparrow"}', {"format": "grouparrow"}, "m")
    """
    recorded = body.get(CHECKSUM_FIELD)
    if recorded is None:
        unknown = sorted(set(body) - LEGACY_FIELDS)
        if unknown:
            raise CorruptDatasetError(
                f"{where} has no {CHECKSUM_FIELD} but fields that manifests without one never "
                f"had ({', '.join(map(repr, unknown))}); the manifest is damaged"
            )
        return
    matches = list(_CHECKSUM.finditer(text))
    if not isinstance(recorded, str) or not matches or matches[-1].group(1) != recorded:
        raise CorruptDatasetError(
            f"{where}: {CHECKSUM_FIELD} is {recorded!r}, not 64 lowercase hex digits at the end "
            "of the manifest; the manifest is damaged"
        )
    found = matches[-1]
    zeroed = text[: found.start(1)] + "0" * 64 + text[found.end(1) :]
    if hashlib.sha256(zeroed.encode("utf-8")).hexdigest() != recorded:
        raise CorruptDatasetError(
            f"{where} does not match its own checksum ({CHECKSUM_FIELD}): it is damaged, or "
            "was edited by hand; restore it, or rebuild the dataset"
        )


#: How a reader identifies the manifest it read (see :func:`manifest_stamp`).
ManifestStamp = tuple[Any, ...]
#: How long a reader waits for a dataset being replaced (its directory renamed aside and
#: the new one renamed into place: two renames) to reappear.
SWAP_WAIT_SECONDS = 2.0


def read_manifest(path: str | os.PathLike[str] | Storage, *, checksum: bool = True) -> Manifest:
    """Read ``<path>/grouparrow.json`` (``path`` a directory, a URI, or a
    :class:`~grouparrow.storage.Storage`); a location without one is not a grouped dataset.
    ``checksum=False`` skips the manifest's own checksum (``grouparrow verify
    --no-checksums``).

    Example:
        >>> read_manifest("/nonexistent/ds")
        Traceback (most recent call last):
        ...
        FileNotFoundError: no grouped dataset at '/nonexistent/ds'
    """
    return open_manifest(path, checksum=checksum)[0]


def open_manifest(
    path: str | os.PathLike[str] | Storage, *, checksum: bool = True
) -> tuple[Manifest, ManifestStamp]:
    """The manifest at ``path`` (as :func:`read_manifest`) and the stamp of the file read:
    a reader compares it with :func:`manifest_stamp` later to tell that the dataset was
    replaced since (:class:`DatasetReplacedError`).

    Example:
        >>> manifest, stamp = open_manifest("out/fedc4")             # doctest: +SKIP
    """
    if isinstance(path, Storage) or is_uri(path):
        storage = path if isinstance(path, Storage) else Storage.at(path)
        if not storage.local:
            return _read_remote_manifest(storage, checksum)
        path = storage.root_path
    where = Path(path) / MANIFEST
    try:
        data, stamp = _read_local(Path(path))
    except _Interrupted:
        raise
    except FileNotFoundError:
        if not Path(path).exists():
            raise FileNotFoundError(f"no grouped dataset at {os.fspath(path)!r}") from None
        raise FormatError(
            f"{os.fspath(path)!r} is not a grouparrow dataset: it has no {MANIFEST} "
            "(an interrupted build leaves none; rebuild it)"
        ) from None
    except NotADirectoryError:
        raise FormatError(
            f"{os.fspath(path)!r} is a file; a grouped dataset is a directory written by "
            "grouparrow.build"
        ) from None
    except IsADirectoryError:
        raise FormatError(
            f"{where} is a directory, not a manifest; the dataset is damaged"
        ) from None
    manifest = Manifest.from_json(_decode(data, str(where)), str(where), checksum=checksum)
    _check_inside(Path(path), [MANIFEST, manifest.index, *(s.file for s in manifest.shards)])
    return manifest, stamp


def _check_inside(root: Path, files: list[str]) -> None:
    """Refuse a dataset whose files resolve (through symbolic links) outside its directory:
    a :class:`FormatError` naming the file and where it leads."""
    inside = os.path.realpath(root)
    # Resolved: each directory once, and a file only when it is a link (one lstat), so that
    # opening a dataset of many shards stays cheap.
    paths = {os.path.dirname(rel) for rel in files}
    paths.update(rel for rel in files if os.path.islink(root / rel))
    for rel in sorted(paths):
        resolved = os.path.realpath(root / rel)
        if os.path.commonpath([inside, resolved]) != inside:
            raise FormatError(
                f"{root / rel} is a symbolic link to {resolved}, outside the dataset's "
                f"directory {inside}; grouparrow reads only files inside a dataset: copy the "
                "file in, or move the dataset to where its files are"
            )


class _Interrupted(FileNotFoundError):
    """No dataset at a path whose overwrite was interrupted and could not be undone."""


def _read_local(path: Path) -> tuple[bytes, ManifestStamp]:
    """The manifest's bytes and stamp, read from one open file. While the dataset is being
    replaced (its directory missing, the old one renamed aside), wait for the new one; if
    the overwrite was killed between its renames, put the old one back
    (:func:`grouparrow.gc.recover`, under the lock builds publish with) and read it."""
    deadline = time.monotonic() + SWAP_WAIT_SECONDS
    recovered = False
    while True:
        try:
            with open(path / MANIFEST, "rb") as f:
                stat = os.fstat(f.fileno())
                data = f.read(MAX_MANIFEST_BYTES + 1)
            break
        except FileNotFoundError:
            if path.exists() or not _being_replaced(path):
                raise
            if not recovered:
                recovered = True
                from grouparrow.gc import recover  # (gc imports this module)

                with contextlib.suppress(OSError):  # read-only: wait, then say so
                    recover(path)
                continue
            if time.monotonic() > deadline:
                raise _Interrupted(
                    f"no grouped dataset at {os.fspath(path)!r}: an overwrite of it was "
                    "interrupted between its two renames (the old dataset is beside it, "
                    f"in .{path.name}.grouparrow-old-*); run grouparrow gc on it to put "
                    "the old one back"
                ) from None
            time.sleep(0.01)
    if len(data) > MAX_MANIFEST_BYTES:
        raise FormatError(
            f"{path / MANIFEST} is larger than {MAX_MANIFEST_BYTES:,} bytes: not a manifest"
        )
    return data, _stamp(stat)


def _being_replaced(path: Path) -> bool:
    """Whether the directory of an overwrite in progress, the old dataset renamed aside
    (``.<name>.grouparrow-old-<id>``, see ``grouparrow/_commit.py``), is beside ``path``."""
    try:
        prefix = f".{path.name}.grouparrow-old-"
        return any(name.startswith(prefix) for name in os.listdir(path.parent or "."))
    except OSError:
        return False


def _stamp(stat: os.stat_result) -> ManifestStamp:
    return ("local", stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)


def manifest_stamp(storage: Storage) -> ManifestStamp | None:
    """The stamp of the manifest now at ``storage`` (``None`` if there is none): locally its
    file's device, inode, modification time and size (a stat); on an object store the
    SHA-256 of its bytes (a read).

    Example:
        >>> manifest_stamp(Storage.at("/nonexistent/ds")) is None
        True
    """
    if storage.local:
        try:
            return _stamp(os.stat(storage.root_path / MANIFEST))
        except OSError:
            return None
    try:
        return ("sha256", hashlib.sha256(storage.read_bytes(MANIFEST)).hexdigest())
    except FileNotFoundError:
        return None


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{where} is not UTF-8 text; the dataset is damaged") from exc


def _read_remote_manifest(storage: Storage, checksum: bool) -> tuple[Manifest, ManifestStamp]:
    where = storage.url(MANIFEST)
    try:
        data = storage.read_bytes(MANIFEST)
    except FileNotFoundError:
        if not storage.exists():
            raise FileNotFoundError(f"no grouped dataset at {storage.uri!r}") from None
        raise FormatError(
            f"{storage.uri!r} is not a grouparrow dataset: it has no {MANIFEST} (an "
            "interrupted build leaves none; rebuild it)"
        ) from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise FormatError(f"{where} is larger than {MAX_MANIFEST_BYTES:,} bytes: not a manifest")
    manifest = Manifest.from_json(_decode(data, where), where, checksum=checksum)
    return manifest, ("sha256", hashlib.sha256(data).hexdigest())


# -- the files' checks ----------------------------------------------------------------------


def tail_start(metadata: pq.FileMetaData) -> int:
    """Where a Parquet file's tail starts: the end of its last column chunk's pages (after
    it come the page index, the footer, its length and the magic).

    Example:
        >>> import io
        >>> sink = io.BytesIO(); pq.write_table(pa.table({"x": [1, 2]}), sink)
        >>> 4 < tail_start(pq.read_metadata(pa.BufferReader(sink.getvalue()))) < 200
        True
    """
    end = 4  # the leading magic
    for i in range(metadata.num_row_groups):
        row_group = metadata.row_group(i)
        for j in range(row_group.num_columns):
            chunk = row_group.column(j)
            first = chunk.data_page_offset
            if chunk.has_dictionary_page and chunk.dictionary_page_offset:
                first = min(first, chunk.dictionary_page_offset)
            end = max(end, first + chunk.total_compressed_size)
    return end


def file_checks(storage: Storage, rel: str) -> IndexInfo:
    """The size, SHA-256 and tail checksum of the Parquet file ``rel`` of ``storage`` (what
    the manifest records of the index; of a shard, the tail).

    Example:
        >>> file_checks(Storage.at("out/fedc4"), "index.parquet")   # doctest: +SKIP
        IndexInfo(file_bytes=4096, sha256='...', tail_bytes=812, tail_sha256='...')
    """
    size = storage.size(rel)
    with storage.open_ranges(rel) as f:
        start = tail_start(pq.ParquetFile(f).metadata)
        f.seek(start)
        tail = f.read(size - start)
    return IndexInfo(size, storage.sha256(rel), len(tail), hashlib.sha256(tail).hexdigest())


def seal(manifest: Manifest, storage: Storage | str | os.PathLike[str]) -> Manifest:
    """``manifest`` with the checks it does not record yet filled in from the files in
    ``storage`` (the build's directory): the index's size, SHA-256 and tail checksum
    (``index_info``), and each shard's tail checksum. Local builds get them from
    :func:`write_manifest`; a build committed to an object store seals its manifest from the
    local files before uploading them.

    Example:
        >>> manifest = seal(manifest, tmp)                               # doctest: +SKIP
    """
    storage = storage if isinstance(storage, Storage) else Storage.at(storage)
    index_info = manifest.index_info or file_checks(storage, manifest.index)
    shards = []
    for shard in manifest.shards:
        if not shard.tail_sha256:
            checks = file_checks(storage, shard.file)
            shard = dataclasses.replace(
                shard, tail_bytes=checks.tail_bytes, tail_sha256=checks.tail_sha256
            )
        shards.append(shard)
    return dataclasses.replace(manifest, index_info=index_info, shards=tuple(shards))


def write_manifest(directory: Path | Storage, manifest: Manifest) -> None:
    """Write the manifest durably: locally a temporary file, fsync, then an atomic rename;
    on an object store one put of the whole object (atomic there). A local manifest is
    :func:`seal`-ed first, from the files in ``directory``.

    Example:
        >>> write_manifest(Storage.at("memory://wm-example"), manifest)   # doctest: +SKIP
    """
    if isinstance(directory, Storage):
        if not directory.local:
            directory.write_bytes(MANIFEST, manifest.to_json().encode("utf-8"))
            return
        directory = directory.root_path
    manifest = seal(manifest, Storage.at(directory))
    tmp = directory / f".{MANIFEST}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(manifest.to_json())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / MANIFEST)
