"""The on-disk format (version 1): manifest, index and shard files. See FORMAT.md.

Example:
    >>> shard_file(3, 8)
    'data/shard-00003-of-00008.parquet'
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from grouparrow.errors import FormatError
from grouparrow.storage import Storage, is_uri

FORMAT_NAME = "grouparrow"
FORMAT_VERSION = 1
MANIFEST = "grouparrow.json"
INDEX = "index.parquet"
DATA_DIR = "data"
_CHUNK = 4 * 2**20

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


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """One shard file as the manifest records it."""

    file: str
    num_rows: int
    num_groups: int
    num_bytes: int
    file_bytes: int
    sha256: str


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
        """The manifest as JSON text, human-readable schema included."""
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
            "shards": [asdict(s) for s in self.shards],
            "stats": self.stats,
            "source": self.source,
            "build": self.build,
        }
        return json.dumps(body, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = MANIFEST) -> Manifest:
        """Parse and validate manifest JSON; ``where`` names the file in errors."""
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise FormatError(f"{where} is not valid JSON ({exc}); the dataset is damaged") from exc
        if not isinstance(body, dict) or body.get("format") != FORMAT_NAME:
            raise FormatError(f'{where} is not a grouparrow manifest (no "format": "grouparrow")')
        version = body.get("format_version")
        if version != FORMAT_VERSION:
            raise FormatError(
                f"{where} has format_version {version!r}, but this grouparrow reads version "
                f"{FORMAT_VERSION}; upgrade grouparrow (pip install -U grouparrow) or rebuild "
                "the dataset with this version"
            )
        try:
            schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(body["arrow_schema"])))
            manifest = cls(
                schema=schema,
                key_column=body["key"]["column"],
                key={k: v for k, v in body["key"].items() if k not in ("column", "type")},
                seed=int(body["seed"]),
                num_groups=int(body["num_groups"]),
                num_rows=int(body["num_rows"]),
                num_bytes=int(body["num_bytes"]),
                shards=tuple(ShardInfo(**s) for s in body["shards"]),
                source=body.get("source", {}),
                stats=body.get("stats", {}),
                build=body.get("build", {}),
                grouparrow_version=body.get("grouparrow_version", ""),
                created_at=body.get("created_at", ""),
                index=body.get("index", INDEX),
            )
        except (KeyError, TypeError, ValueError, pa.ArrowInvalid) as exc:
            raise FormatError(f"{where} is malformed ({type(exc).__name__}: {exc})") from exc
        check_relative_path(manifest.index, where, '"index"')
        for n, shard in enumerate(manifest.shards):
            check_relative_path(shard.file, where, f'"shards"[{n}]["file"]')
        return manifest


def read_manifest(path: str | os.PathLike[str] | Storage) -> Manifest:
    """Read ``<path>/grouparrow.json`` (``path`` a directory, a URI, or a
    :class:`~grouparrow.storage.Storage`); a location without one is not a grouped dataset.

    Example:
        >>> read_manifest("/nonexistent/ds")
        Traceback (most recent call last):
        ...
        FileNotFoundError: no grouped dataset at '/nonexistent/ds'
    """
    if isinstance(path, Storage) or is_uri(path):
        storage = path if isinstance(path, Storage) else Storage.at(path)
        if not storage.local:
            return _read_remote_manifest(storage)
        path = storage.root_path
    where = Path(path) / MANIFEST
    try:
        text = where.read_text(encoding="utf-8")
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
    except UnicodeDecodeError as exc:
        raise FormatError(f"{where} is not UTF-8 text; the dataset is damaged") from exc
    return Manifest.from_json(text, str(where))


def _read_remote_manifest(storage: Storage) -> Manifest:
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
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{where} is not UTF-8 text; the dataset is damaged") from exc
    return Manifest.from_json(text, where)


def write_manifest(directory: Path | Storage, manifest: Manifest) -> None:
    """Write the manifest durably: locally a temporary file, fsync, then an atomic rename;
    on an object store one put of the whole object (atomic there).

    Example:
        >>> write_manifest(Storage.at("memory://wm-example"), manifest)   # doctest: +SKIP
    """
    if isinstance(directory, Storage):
        if not directory.local:
            directory.write_bytes(MANIFEST, manifest.to_json().encode("utf-8"))
            return
        directory = directory.root_path
    tmp = directory / f".{MANIFEST}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(manifest.to_json())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / MANIFEST)
