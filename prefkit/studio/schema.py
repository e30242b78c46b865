"""The studio's tables (SQLAlchemy 2 ORM); the Alembic migrations in ``migrations/`` create them.

Data model (docs/studio.md): a project holds prompts, responses (optionally from a checkpoint)
and pairs of two responses to one prompt, stored in canonical order ``resp_a_id < resp_b_id``.
An *assignment* gives one pair to one annotator with a recorded left/right order; a *label*
answers one assignment with a canonical verdict (``a``, ``b``, ``tie``, ``both_bad``), so the
screen position never leaks into the stored preference. ``selection_round`` records each refit
of the active-selection ensemble; ``rating_run``/``rating`` each computed leaderboard.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

VERDICTS = ("a", "b", "tie", "both_bad")
ROLES = ("admin", "annotator")
CRITIQUE_MODES = ("off", "optional", "required")
SELECTION_METHODS = ("random", "bald", "variance")
RENDER_MODES = ("markdown", "text")
ORIGINS = ("import", "generated", "arena", "world")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Annotator(Base):
    __tablename__ = "annotator"
    __table_args__ = (CheckConstraint("role IN ('admin', 'annotator')", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    handle: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Project(Base):
    __tablename__ = "project"
    __table_args__ = (
        CheckConstraint("critique IN ('off', 'optional', 'required')", name="critique"),
        CheckConstraint("selection IN ('random', 'bald', 'variance')", name="selection"),
        CheckConstraint("render IN ('markdown', 'text')", name="render"),
        CheckConstraint("overlap_k >= 1", name="overlap_k"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    guideline_md: Mapped[str] = mapped_column(Text, default="")
    allow_tie: Mapped[bool] = mapped_column(Boolean, default=True)
    allow_both_bad: Mapped[bool] = mapped_column(Boolean, default=True)
    critique: Mapped[str] = mapped_column(String(16), default="optional")
    overlap_k: Mapped[int] = mapped_column(Integer, default=1)
    selection: Mapped[str] = mapped_column(String(16), default="random")
    refit_every: Mapped[int] = mapped_column(Integer, default=20)
    ensemble_kind: Mapped[str] = mapped_column(String(8), default="bt")
    ensemble_size: Mapped[int] = mapped_column(Integer, default=8)
    render: Mapped[str] = mapped_column(String(16), default="markdown")
    lock_minutes: Mapped[int] = mapped_column(Integer, default=60)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Checkpoint(Base):
    __tablename__ = "checkpoint"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    uri: Mapped[str] = mapped_column(Text)


class Prompt(Base):
    __tablename__ = "prompt"
    __table_args__ = (UniqueConstraint("project_id", "content_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))


class Response(Base):
    __tablename__ = "response"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompt.id"), index=True)
    checkpoint_id: Mapped[int | None] = mapped_column(ForeignKey("checkpoint.id"), nullable=True)
    text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    gen_params_json: Mapped[str | None] = mapped_column(Text, nullable=True)


class SelectionRound(Base):
    __tablename__ = "selection_round"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    method: Mapped[str] = mapped_column(String(16))
    params_json: Mapped[str] = mapped_column(Text)
    model_version: Mapped[str] = mapped_column(String(64))
    n_labels: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Pair(Base):
    __tablename__ = "pair"
    __table_args__ = (
        UniqueConstraint("project_id", "resp_a_id", "resp_b_id"),
        CheckConstraint("resp_a_id < resp_b_id", name="canonical_order"),
        CheckConstraint("status IN ('open', 'closed')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompt.id"))
    resp_a_id: Mapped[int] = mapped_column(ForeignKey("response.id"))
    resp_b_id: Mapped[int] = mapped_column(ForeignKey("response.id"))
    origin: Mapped[str] = mapped_column(String(16))
    source: Mapped[str | None] = mapped_column(Text, nullable=True)
    selection_round_id: Mapped[int | None] = mapped_column(ForeignKey("selection_round.id"), nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    random_key: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Assignment(Base):
    __tablename__ = "assignment"
    __table_args__ = (
        UniqueConstraint("pair_id", "annotator_id"),
        CheckConstraint("status IN ('issued', 'done', 'expired')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pair.id"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotator.id"), index=True)
    left_is_a: Mapped[bool] = mapped_column(Boolean)
    issued_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16), default="issued")


class Label(Base):
    __tablename__ = "label"
    __table_args__ = (
        CheckConstraint("verdict IN ('a', 'b', 'tie', 'both_bad')", name="verdict"),
        CheckConstraint("confidence IS NULL OR (confidence >= 1 AND confidence <= 5)", name="confidence"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id"), unique=True)
    verdict: Mapped[str] = mapped_column(String(16))
    critique: Mapped[str | None] = mapped_column(Text, nullable=True)
    confidence: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    client_nonce: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class RatingRun(Base):
    __tablename__ = "rating_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    method: Mapped[str] = mapped_column(String(16))
    n_boot: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    tie_policy: Mapped[str] = mapped_column(String(32))
    n_labels: Mapped[int] = mapped_column(Integer)
    code_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Rating(Base):
    __tablename__ = "rating"

    run_id: Mapped[int] = mapped_column(ForeignKey("rating_run.id"), primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("checkpoint.id"), primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    ci_lo: Mapped[float] = mapped_column(Float)
    ci_hi: Mapped[float] = mapped_column(Float)
    rank: Mapped[int] = mapped_column(Integer)
    n_battles: Mapped[int] = mapped_column(Integer)
