"""grouparrow: group any dataset by a key into group-clustered Parquet, and read the groups back.

Example:
    >>> import grouparrow as ga, pyarrow as pa, tempfile
    >>> table = pa.table({"user": ["ann", "bob", "ann"], "text": ["hi", "yo", "hey there"]})
    >>> ds = ga.build(table, key="user", output=tempfile.mkdtemp() + "/by-user")
    >>> ds["ann"].num_rows
    2
"""

from __future__ import annotations

__version__ = "0.1.0"

from grouparrow import examples, lm, partitioners
from grouparrow._hf import hf_dataset
from grouparrow.build import build
from grouparrow.counts import group_counts
from grouparrow.dataset import GroupedDataset, PartitionedDataset, open
from grouparrow.errors import (
    CorruptDatasetError,
    DatasetReplacedError,
    FormatError,
    GroupArrowError,
    GroupNotFoundError,
    KeyFunctionError,
    KeySpecError,
    LabelError,
    NullKeyError,
    OutputExistsError,
    QueryError,
    RowKeyError,
    SourceError,
    TensorShapeError,
)
from grouparrow.gc import gc
from grouparrow.group import Group
from grouparrow.keys import batch_key_fn, key_fn, key_hash, shard_of, sql
from grouparrow.statistics import stats
from grouparrow.verify import VerifyReport, verify

__all__ = [
    "CorruptDatasetError",
    "DatasetReplacedError",
    "FormatError",
    "Group",
    "GroupArrowError",
    "GroupNotFoundError",
    "GroupedDataset",
    "KeyFunctionError",
    "KeySpecError",
    "LabelError",
    "NullKeyError",
    "OutputExistsError",
    "PartitionedDataset",
    "QueryError",
    "RowKeyError",
    "SourceError",
    "TensorShapeError",
    "VerifyReport",
    "__version__",
    "batch_key_fn",
    "build",
    "examples",
    "gc",
    "group_counts",
    "hf_dataset",
    "key_fn",
    "key_hash",
    "lm",
    "open",
    "partitioners",
    "shard_of",
    "sql",
    "stats",
    "verify",
]
