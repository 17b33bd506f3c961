"""Bearer-token authentication, shared by both transports (health is always open)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from pathlib import Path

from service.contract.access import Access, access
from service.errors import PermissionDenied, StartupError, Unauthenticated

_PREFIX = "bearer "


class TokenVerifier:
    """Checks ``Authorization: Bearer <token>`` against the configured tokens in constant time."""

    def __init__(self, tokens: Iterable[str]) -> None:
        # Compare digests, so neither a token's length nor its prefix leaks through timing.
        self._digests = [hashlib.sha256(t.encode()).digest() for t in tokens if t]
        if not self._digests:
            raise StartupError("token authentication needs at least one non-empty token")

    def check(self, authorization: str | None) -> None:
        """Raise Unauthenticated unless ``authorization`` carries a valid bearer token."""
        if not authorization or not authorization[: len(_PREFIX)].lower() == _PREFIX:
            raise Unauthenticated("missing bearer token: send 'authorization: Bearer <token>'")
        candidate = hashlib.sha256(authorization[len(_PREFIX):].strip().encode()).digest()
        matched = False
        for digest in self._digests:  # no early exit: every token is compared
            matched |= hmac.compare_digest(candidate, digest)
        if not matched:
            raise Unauthenticated("invalid bearer token")


class AdminVerifier:
    """Model control calls: an admin token is required whenever tokens are configured.

    ``admin`` checks the admin tokens; None means none is configured, so every
    control call is refused (ordinary tokens never grant model control).
    ``known`` checks every token the server accepts: a token it does not know is
    UNAUTHENTICATED (401), one it knows that is no admin token PERMISSION_DENIED (403).
    """

    def __init__(self, admin: TokenVerifier | None, known: TokenVerifier | None = None) -> None:
        self._admin = admin
        self._known = known

    def check(self, authorization: str | None) -> None:
        """Raise Unauthenticated without a token or with an unknown one, PermissionDenied unless it is an admin token."""
        if not authorization:
            raise Unauthenticated("model control needs an admin bearer token: send 'authorization: Bearer <token>'")
        if self._admin is not None:
            try:
                self._admin.check(authorization)
                return
            except Unauthenticated:
                pass
        none_configured = self._admin is None
        if self._known is not None:
            self._known.check(authorization)  # Unauthenticated for a token nobody configured
        elif not none_configured:
            raise Unauthenticated("invalid bearer token")
        if none_configured:
            raise PermissionDenied(
                "model control needs an admin token and none is configured (CLASSIFY_ADMIN_TOKENS or --admin-token-file)"
            )
        raise PermissionDenied("model control needs an admin token; this token may only classify")


class Authorizer:
    """The access table (service/contract/access.py) applied to one call; both transports ask it.

    ``verifier`` None: no tokens configured, every call is open. ``admin`` None:
    model control is open too (no token of any kind configured).
    """

    def __init__(self, verifier: TokenVerifier | None, admin: AdminVerifier | None) -> None:
        self._verifier = verifier
        self._admin = admin

    @property
    def tokens_required(self) -> bool:
        return self._verifier is not None

    def check(self, method: str, authorization: str | None) -> None:
        """Raise Unauthenticated or PermissionDenied unless ``authorization`` may call ``/package.Service/Method``."""
        rule = access(method)
        if rule is Access.OPEN:
            return
        if self._verifier is not None:
            self._verifier.check(authorization)
        if rule is Access.ADMIN and self._admin is not None:
            self._admin.check(authorization)

    def check_page(self, authorization: str | None) -> None:
        """An HTTP route that calls no RPC (/metrics, /docs): a token once tokens are configured."""
        if self._verifier is not None:
            self._verifier.check(authorization)


def load_tokens(inline: Iterable[str], token_file: Path | None) -> list[str]:
    """Tokens from settings (env var) plus a file of one token a line (blank lines and # comments skipped)."""
    tokens = [t for t in inline if t]
    if token_file is not None:
        try:
            lines = token_file.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise StartupError(f"auth token file {token_file} cannot be read: {error}") from None
        tokens += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return tokens
