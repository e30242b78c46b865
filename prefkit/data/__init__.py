"""Feedback records, readers, writers and validation (docs/data.md)."""

from prefkit.data.columns import COLUMNS
from prefkit.data.lengths import LengthProblem, over_length
from prefkit.data.readers import (
    MAX_ROW_BYTES,
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
from prefkit.data.run_checks import check_batch_size, read_options
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
    "MAX_ROW_BYTES",
    "DataSource",
    "InvalidRowsError",
    "LengthProblem",
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
    "check_batch_size",
    "detect_kind",
    "eval_source",
    "hf_counter",
    "kl_partners",
    "over_length",
    "read_feedback",
    "read_lists",
    "read_options",
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
