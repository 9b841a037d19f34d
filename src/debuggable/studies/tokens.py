"""Unguessable links: annotator and admin tokens signed with the study's secret.

A token is ``<annotator_id>.<signature>`` where the signature is 192 bits of
HMAC-SHA256 over the id with a 256-bit secret kept in ``studies/secret.key``
(readable by its owner only). Nothing secret is stored in the database, links can be
re-derived for a crowd platform's export at any time, and a token is checked by
recomputing its signature and comparing in constant time
(:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from debuggable.errors import DebuggableError

SECRET_BYTES = 32
_SIG_BYTES = 24
_ADMIN = "admin"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_or_create_secret(path: str | os.PathLike) -> bytes:
    """The secret in ``path``, created (mode 0600) when missing."""
    path = Path(path)
    if path.exists():
        data = path.read_bytes()
        if len(data) != SECRET_BYTES:
            raise DebuggableError(
                f"{str(path)!r} is not a study secret ({len(data)} bytes, expected {SECRET_BYTES}); "
                "restore it from a backup, or delete it and create the studies again (all links change)."
            )
        return data
    path.parent.mkdir(parents=True, exist_ok=True)
    data = secrets.token_bytes(SECRET_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return data


class TokenSigner:
    """Makes and checks annotator and admin tokens with one secret."""

    def __init__(self, secret: bytes):
        if not isinstance(secret, bytes) or len(secret) < 16:
            raise DebuggableError("secret: expected at least 16 random bytes.")
        self._secret = secret

    def _sign(self, purpose: str, subject: str) -> str:
        mac = hmac.new(self._secret, f"{purpose}\x00{subject}".encode(), hashlib.sha256).digest()
        return _b64(mac[:_SIG_BYTES])

    def annotator_token(self, annotator_id: str) -> str:
        if "." in annotator_id or not annotator_id:
            raise DebuggableError(f"annotator id {annotator_id!r}: expected a non-empty id without '.'.")
        return f"{annotator_id}.{self._sign('annotator', annotator_id)}"

    def verify_annotator(self, token: str) -> str | None:
        """The annotator id a token was made for, or None for a forged or malformed one."""
        if not isinstance(token, str) or len(token) > 200 or "." not in token:
            return None
        annotator_id, _, sig = token.rpartition(".")
        if not annotator_id:
            return None
        expected = self._sign("annotator", annotator_id)
        return annotator_id if hmac.compare_digest(sig.encode(), expected.encode()) else None

    def admin_token(self) -> str:
        return self._sign(_ADMIN, _ADMIN)

    def verify_admin(self, token: str) -> bool:
        if not isinstance(token, str) or len(token) > 200:
            return False
        return hmac.compare_digest(token.encode(), self.admin_token().encode())
