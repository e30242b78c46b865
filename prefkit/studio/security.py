"""Tokens, CSRF and input limits.

Invitation tokens are 256-bit random strings (``secrets.token_urlsafe(32)``); only their SHA-256
is stored. A token is not a password a person chose, so an unsalted fast hash is the right tool:
guessing one means guessing 256 random bits, and the hash lets a sign-in look the token up by
index. CSRF tokens are per session (the synchronizer-token pattern of the OWASP CSRF
Prevention Cheat Sheet): a hidden ``csrf_token`` field in every form, or an ``X-CSRF-Token``
header from the page's JavaScript, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

TOKEN_BYTES = 32
MAX_HANDLE_CHARS = 64
MAX_PROMPT_CHARS = 20_000
MAX_RESPONSE_CHARS = 20_000
MAX_CRITIQUE_CHARS = 4_000
MAX_ARENA_PROMPT_CHARS = 4_000
MAX_GUIDELINE_CHARS = 50_000
MAX_BODY_BYTES = 256 * 1024
MAX_DURATION_MS = 24 * 3600 * 1000
NONCE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
HANDLE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def new_token() -> str:
    """A fresh invitation token (shown once; only its hash is stored)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a token (what the ``annotator.token_hash`` column holds)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def same_token(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; a missing token on either side never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def check_handle(handle: str) -> str:
    """A handle is 1-64 characters of ``a-z 0-9 _ . -``, starting with a letter or digit."""
    if not isinstance(handle, str) or not HANDLE_PATTERN.match(handle):
        raise ValueError(
            f"handle {handle!r} must be 1-{MAX_HANDLE_CHARS} characters of a-z, 0-9, '_', '.', '-' "
            "starting with a letter or digit"
        )
    return handle
