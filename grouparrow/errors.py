"""The exceptions grouparrow raises.

Every error derives from :class:`GroupArrowError` and also from the builtin a caller would
naturally catch (``KeyError`` for a missing group, ``ValueError`` for bad input or a bad
file), so ``except KeyError`` keeps working for people who never heard of grouparrow.
"""

from __future__ import annotations


class GroupArrowError(Exception):
    """Root of every error raised by grouparrow."""


class SourceError(ValueError, GroupArrowError):
    """The input cannot be read: unknown type, missing file, unsupported format."""


class KeySpecError(ValueError, GroupArrowError):
    """The ``key=`` given to :func:`grouparrow.build` is not usable (unknown column, bad type)."""


class RowKeyError(ValueError, GroupArrowError):
    """Base for errors met while computing the key of a row."""


class NullKeyError(RowKeyError):
    """A row's key is null and ``on_null="error"`` (the default)."""


class KeyFunctionError(RowKeyError):
    """The user's key function raised, or returned a value of an unsupported type."""


class LabelError(RowKeyError):
    """A row's label is not one of the ``labels=`` a partitioner was told to expect."""


class TensorShapeError(ValueError, GroupArrowError):
    """A tensor shape does not fit its column (``tensor_shapes=`` of :func:`grouparrow.build`,
    ``Group.to_numpy(shape=...)``): another number of values per row, or not fixed-width."""


class OutputExistsError(FileExistsError, GroupArrowError):
    """The output directory exists and ``mode="error"``."""


class FormatError(ValueError, GroupArrowError):
    """A grouped dataset on disk is missing, malformed or of an unknown format version."""


class CorruptDatasetError(FormatError):
    """A file of a grouped dataset does not match its manifest (checksum, size, rows)."""


class DatasetReplacedError(FormatError):
    """The dataset was rebuilt (or its statistics recomputed) at its location after it was
    opened: what the reader holds no longer matches the files there. Open it again."""


class GroupNotFoundError(KeyError, GroupArrowError):
    """No group has the requested id."""

    def __str__(self) -> str:  # KeyError's str() is the repr of its argument; keep the text.
        return str(self.args[0]) if self.args else ""


class QueryError(ValueError, GroupArrowError):
    """A SQL query over a grouped dataset (``ds.sql``) failed to parse, bind or run."""
