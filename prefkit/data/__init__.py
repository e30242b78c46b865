"""Feedback records, readers, writers and validation (docs/data.md)."""

from prefkit.data.columns import COLUMNS
from prefkit.data.readers import (
    detect_kind,
    read_feedback,
    read_lists,
    read_pairs,
    read_prompts,
    read_unpaired,
    validate,
)
from prefkit.data.records import (
    ListRecord,
    Message,
    PairRecord,
    PromptRecord,
    Source,
    Text,
    UnpairedRecord,
)
from prefkit.data.report import InvalidRowsError, LengthStats, ReadReport, RowError
from prefkit.data.sources import DataSource, eval_source, train_source
from prefkit.data.split import split
from prefkit.data.tokens import (
    TokenCounter,
    hf_counter,
    render_plain,
    tokenizer_counter,
    whitespace_counter,
)
from prefkit.data.unpaired import kl_partners, unpair
from prefkit.data.writers import to_hf_dataset, write_jsonl, write_parquet

__all__ = [
    "COLUMNS",
    "DataSource",
    "InvalidRowsError",
    "LengthStats",
    "ListRecord",
    "Message",
    "PairRecord",
    "PromptRecord",
    "ReadReport",
    "RowError",
    "Source",
    "Text",
    "TokenCounter",
    "UnpairedRecord",
    "detect_kind",
    "eval_source",
    "hf_counter",
    "kl_partners",
    "read_feedback",
    "read_lists",
    "read_pairs",
    "read_prompts",
    "read_unpaired",
    "render_plain",
    "split",
    "to_hf_dataset",
    "tokenizer_counter",
    "train_source",
    "unpair",
    "validate",
    "whitespace_counter",
    "write_jsonl",
    "write_parquet",
]
