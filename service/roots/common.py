"""What both composition roots build the same way: the authorizer, TLS files, the stop signal."""

from __future__ import annotations

import asyncio
import signal

from http_gateway.server import TlsFiles
from service.auth import AdminVerifier, Authorizer, TokenVerifier, load_tokens
from service.settings import Settings


def stop_event() -> asyncio.Event:
    """Set on SIGTERM or SIGINT: the roots own the signals (uvicorn installs none, http_gateway/server.py)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


def authorizer(settings: Settings) -> Authorizer:
    """The access table applied with the configured tokens (none configured: every call is open)."""
    verifier = token_verifier(settings)
    return Authorizer(verifier, admin_verifier(settings, verifier))


def token_verifier(settings: Settings) -> TokenVerifier | None:
    """Checks every call but the open ones once any token is configured; None when none is."""
    tokens = load_tokens((t.get_secret_value() for t in settings.auth_tokens), settings.auth_token_file)
    if not tokens and settings.auth_token_file is None:
        return None
    return TokenVerifier(tokens + admin_tokens(settings))  # an admin token may classify too


def admin_tokens(settings: Settings) -> list[str]:
    """The admin tokens from CLASSIFY_ADMIN_TOKENS and --admin-token-file."""
    return load_tokens((t.get_secret_value() for t in settings.admin_tokens), settings.admin_token_file)


def admin_verifier(settings: Settings, verifier: TokenVerifier | None) -> AdminVerifier | None:
    """Model control needs an admin token once any token is configured; with none at all it is open."""
    admin = admin_tokens(settings)
    if verifier is None and not admin and settings.admin_token_file is None:
        return None
    return AdminVerifier(TokenVerifier(admin) if admin else None)


def tls_files(settings: Settings) -> TlsFiles | None:
    """The certificate, key and client CA to serve with; None without --tls-cert-file."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    return TlsFiles(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)
