"""Annotators: per-person invitation tokens (hashed at rest), roles, revocation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefkit.studio.errors import StudioError
from prefkit.studio.security import check_handle, hash_token, new_token
from prefkit.studio.store import Store, utcnow


@dataclass(frozen=True)
class AnnotatorInfo:
    id: int
    handle: str
    role: str
    active: bool
    token_fingerprint: str
    """The first 12 hex digits of the token's hash: a session remembers it, so a rotated or
    revoked token ends the sessions it opened."""


def _info(row: Any) -> AnnotatorInfo:
    return AnnotatorInfo(row.id, row.handle, row.role, bool(row.active), row.token_hash[:12])


def add_annotator(store: Store, handle: str, role: str = "annotator") -> tuple[AnnotatorInfo, str]:
    """Create an annotator; returns its info and its token (the only time the token is seen)."""
    from sqlalchemy import select

    from prefkit.studio.schema import ROLES, Annotator

    handle = _checked_handle(handle)
    if role not in ROLES:
        raise StudioError(f"role must be one of {', '.join(ROLES)}, got {role!r}", field="role")
    token = new_token()
    with store.write() as s:
        if s.scalar(select(Annotator.id).where(Annotator.handle == handle)) is not None:
            raise StudioError(f"an annotator named {handle!r} already exists (rotate its token with "
                              "`prefkit studio annotator token`)", field="handle")
        row = Annotator(handle=handle, role=role, token_hash=hash_token(token), active=True, created_at=utcnow())
        s.add(row)
        s.flush()
        return _info(row), token


def rotate_token(store: Store, handle: str) -> str:
    """A new token for ``handle`` (the old one and its sessions stop working); reactivates."""
    token = new_token()
    with store.write() as s:
        row = _by_handle(s, handle)
        row.token_hash, row.active = hash_token(token), True
    return token


def set_active(store: Store, handle: str, active: bool) -> AnnotatorInfo:
    """Revoke (``active=False``) or restore an annotator; a revoked token cannot sign in and its
    open sessions are refused on their next request. Their votes stay."""
    with store.write() as s:
        row = _by_handle(s, handle)
        row.active = active
        return _info(row)


def list_annotators(store: Store) -> list[AnnotatorInfo]:
    from sqlalchemy import select

    from prefkit.studio.schema import Annotator

    with store.read() as s:
        return [_info(r) for r in s.scalars(select(Annotator).order_by(Annotator.id))]


def authenticate(store: Store, token: str) -> AnnotatorInfo:
    """The annotator a token belongs to; an unknown or revoked token is a :class:`StudioError`."""
    from sqlalchemy import select

    from prefkit.studio.schema import Annotator

    if not isinstance(token, str) or not token.strip() or len(token) > 200:
        raise StudioError("unknown token")
    with store.read() as s:
        row = s.scalar(select(Annotator).where(Annotator.token_hash == hash_token(token.strip())))
    if row is None:
        raise StudioError("unknown token")
    if not row.active:
        raise StudioError("this token has been revoked; ask the project owner for a new one")
    return _info(row)


def session_annotator(store: Store, annotator_id: Any, fingerprint: Any) -> AnnotatorInfo | None:
    """The signed-in annotator of a session, or None when the session no longer counts
    (unknown id, revoked, or a token rotated since sign-in)."""
    from prefkit.studio.schema import Annotator

    if not isinstance(annotator_id, int) or not isinstance(fingerprint, str):
        return None
    with store.read() as s:
        row = s.get(Annotator, annotator_id)
    if row is None or not row.active or row.token_hash[:12] != fingerprint:
        return None
    return _info(row)


def _checked_handle(handle: str) -> str:
    try:
        return check_handle(handle)
    except ValueError as err:
        raise StudioError(str(err), field="handle") from err


def _by_handle(session: Any, handle: str) -> Any:
    from sqlalchemy import select

    from prefkit.studio.schema import Annotator

    row = session.scalar(select(Annotator).where(Annotator.handle == handle))
    if row is None:
        raise StudioError(f"no annotator named {handle!r}", field="handle")
    return row
