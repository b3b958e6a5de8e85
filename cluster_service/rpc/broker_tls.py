"""AMQPS: the TLS context of the broker connection, and what a failed handshake means.

``RABBITMQ_TLS=true``: TLS 1.2 or newer, the broker's certificate verified
against ``RABBITMQ_CA_FILE`` (empty: the system's CAs) and its name checked
against the host being connected to, for every node of ``RABBITMQ_HOST``.
Verification cannot be switched off, and nothing ever falls back to plain
AMQP: a node whose certificate does not verify is a node that failed.
"""

from __future__ import annotations

import ssl

import pika

from ..config import Settings


def tls_context(settings: Settings) -> ssl.SSLContext:
    """A client context: TLS >= 1.2, CERT_REQUIRED, host names checked; optional client cert."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED on
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    if settings.rabbitmq_ca_file:
        context.load_verify_locations(cafile=settings.rabbitmq_ca_file)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if settings.rabbitmq_cert_file:
        context.load_cert_chain(settings.rabbitmq_cert_file,
                                settings.rabbitmq_key_file or None)
    return context


def ssl_options(context: ssl.SSLContext, host: str) -> pika.SSLOptions:
    """pika's options for one node: the shared context, the name to verify (``host``)."""
    return pika.SSLOptions(context, server_hostname=host)


def tls_failure(error: BaseException) -> str | None:
    """Why a TLS handshake failed, when ``error`` (or what it wraps) says so, else None.

    pika wraps the socket's error in AMQPConnectionError (possibly several levels
    deep, inside the connection workflow's list of attempts): look inside.
    """
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        item = pending.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {item.verify_message}"
        if isinstance(item, ssl.SSLError):
            return f"TLS handshake failed: {item.reason or type(item).__name__}"
        if isinstance(item, BaseException):
            pending.extend(item.args)
            pending.extend(x for x in (item.__cause__, item.__context__) if x is not None)
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
    return None
