"""``datasets.load_dataset`` arguments as a source, for local files only (no Hub access)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from grouparrow.errors import SourceError

DataFiles = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Mapping[str, Any]


def hf_dataset(
    path: str | os.PathLike[str],
    *,
    data_files: DataFiles | None = None,
    split: str | None = "train",
    streaming: bool = True,
    **kwargs: Any,
) -> Any:
    """``datasets.load_dataset(path, data_files=..., split=..., streaming=...)`` for local
    files, ready for :func:`grouparrow.build`.

    ``path`` is a builder packaged with ``datasets`` (``"parquet"``, ``"json"``,
    ``"csv"``, ``"text"``, ``"arrow"``, ...) or a local folder; ``data_files`` are local
    paths or globs (a list, or a dict of split name -> files). Nothing is fetched from the
    Hub: a dataset name or a URL is refused. With ``streaming=True`` (the default) the
    result is an ``IterableDataset`` that ``build`` reads batch by batch, in bounded memory,
    with no Arrow cache written; ``streaming=False`` prepares the usual cache first.
    ``split=None`` returns every split (pass ``split=`` to ``build`` then). Other keyword
    arguments (``features``, ``delimiter``, ``columns``, ``cache_dir``...) go to
    ``load_dataset`` unchanged. Errors (a missing file, a bad split) are raised as
    :class:`~grouparrow.SourceError`.

    Use it when you want ``datasets``' readers and features (a ``features=`` schema, its
    CSV/JSON parsing, ``.map``/``.filter`` before grouping); ``ga.build("x/*.jsonl", ...)``
    reads the same files directly, with DuckDB, and is faster.

    Example:
        >>> import grouparrow as ga, tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "a.jsonl").write_text('{"user": "ann"}\\n{"user": "bob"}\\n')
        >>> source = ga.hf_dataset("json", data_files=str(folder / "*.jsonl"))
        >>> ga.build(source, key="user", output=folder / "by-user").num_groups
        2
    """
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    name = os.fspath(path)
    if name not in _PACKAGED_DATASETS_MODULES and not os.path.isdir(name):
        builders = ", ".join(sorted(_PACKAGED_DATASETS_MODULES))
        raise SourceError(
            f"hf_dataset reads local files only: {name!r} is neither a builder packaged with "
            f"datasets ({builders}) nor a local folder; for a dataset on the Hub, call "
            "datasets.load_dataset(...) yourself and pass the result to grouparrow.build"
        )
    remote = [f for f in (*_files(data_files), *_files(kwargs.get("data_dir"))) if "://" in f]
    if remote:
        raise SourceError(
            f"hf_dataset reads local files only; {remote[0]!r} is a URL: download it first, "
            "or call datasets.load_dataset(...) yourself and pass the result to grouparrow.build"
        )
    if data_files is not None:
        data_files = _fspath(data_files)
    import datasets

    call = f"datasets.load_dataset({name!r}, data_files={data_files!r}, split={split!r})"
    try:
        return datasets.load_dataset(
            name, data_files=data_files, split=split, streaming=streaming, **kwargs
        )
    except FileNotFoundError as exc:
        raise SourceError(f"file not found: {exc} ({call})") from exc
    except StopIteration as exc:  # what datasets raises for a glob that matches nothing
        raise SourceError(f"no file matches data_files={data_files!r} ({call})") from exc
    except Exception as exc:
        raise SourceError(f"{call} failed: {type(exc).__name__}: {exc}") from exc


def _files(data_files: Any) -> list[str]:
    """Every path named in ``data_files`` (a path, a list, a dict of split -> either)."""
    if data_files is None:
        return []
    if isinstance(data_files, (str, os.PathLike)):
        return [os.fspath(data_files)]
    if isinstance(data_files, Mapping):
        return [f for value in data_files.values() for f in _files(value)]
    return [f for item in data_files for f in _files(item)]


def _fspath(data_files: Any) -> Any:
    """``data_files`` with ``Path`` objects turned into strings, which ``datasets`` wants."""
    if isinstance(data_files, (str, os.PathLike)):
        return os.fspath(data_files)
    if isinstance(data_files, Mapping):
        return {split: _fspath(value) for split, value in data_files.items()}
    return [_fspath(item) for item in data_files]
