"""Feedback records, readers, writers and validation."""

from prefkit.data.records import ListRecord, Message, PairRecord, Source, Text

__all__ = ["ListRecord", "Message", "PairRecord", "Source", "Text"]
