"""What both composition roots build the same way: the authorizer, TLS files, the stop signal."""

from __future__ import annotations

import asyncio
import errno
import signal
import socket

from http_gateway.server import TlsFiles
from service.auth import AdminVerifier, Authorizer, TokenVerifier, load_tokens
from service.errors import StartupError
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
    return AdminVerifier(TokenVerifier(admin) if admin else None, known=verifier)


def tls_files(settings: Settings) -> TlsFiles | None:
    """The certificate, key and client CA to serve with; None without --tls-cert-file."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    return TlsFiles(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)


def check_listen(host: str, port: int, flag: str) -> None:
    """Refuse to start, in one line, where ``host``:``port`` cannot be listened on (before anything binds).

    gRPC core reports a failed bind only as "Failed to bind to address" after its own log lines, and
    binds with SO_REUSEPORT, so a second server on the same port would share it silently: this bind,
    without SO_REUSEPORT, finds both the error and the other process.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as error:
        raise StartupError(
            f"--host {host}: not an address to listen on ({getattr(error, 'strerror', None) or error}); "
            "give an address of this machine: 0.0.0.0 for every interface, 127.0.0.1 for this machine only"
        ) from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as both servers do: TIME_WAIT is no obstacle
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"{flag} {port}: {host}:{port} is already in use by another process; "
                    f"stop that process or choose another port ({flag} 0 picks a free one)"
                ) from None
            if error.errno == errno.EADDRNOTAVAIL:
                raise StartupError(
                    f"--host {host}: not an address of this machine; give one of its addresses, "
                    "0.0.0.0 for every interface or 127.0.0.1 for this machine only"
                ) from None
            if error.errno == errno.EACCES:
                raise StartupError(
                    f"{flag} {port}: permission denied (ports below 1024 need privileges); choose a port above 1023"
                ) from None
            raise StartupError(f"{flag} {port} on --host {host}: cannot listen: {error.strerror}") from None
