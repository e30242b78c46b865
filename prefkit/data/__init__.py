"""Feedback records, readers, writers and validation (docs/data.md)."""

from prefkit.data.readers import (
    detect_kind,
    read_feedback,
    read_lists,
    read_pairs,
    read_prompts,
    validate,
)
from prefkit.data.records import ListRecord, Message, PairRecord, PromptRecord, Source, Text
from prefkit.data.report import InvalidRowsError, LengthStats, ReadReport, RowError
from prefkit.data.split import split
from prefkit.data.tokens import (
    TokenCounter,
    hf_counter,
    render_plain,
    tokenizer_counter,
    whitespace_counter,
)
from prefkit.data.writers import to_hf_dataset, write_jsonl, write_parquet

__all__ = [
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
    "detect_kind",
    "hf_counter",
    "read_feedback",
    "read_lists",
    "read_pairs",
    "read_prompts",
    "render_plain",
    "split",
    "to_hf_dataset",
    "tokenizer_counter",
    "validate",
    "whitespace_counter",
    "write_jsonl",
    "write_parquet",
]
