"""The TLS context for a `rediss://` URL's `ssl_*` options, read as redis-py reads them, so
that one URL means the same on every driver: the server is verified against `ssl_ca_certs`
(or the system's CAs), its name checked unless `ssl_check_hostname=false`, and
`ssl_certfile`/`ssl_keyfile` present a client certificate when the server asks for one."""

from __future__ import annotations

import os
import ssl
from typing import Any

from ..errors import ConfigurationError

_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def _flag(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in ("0", "false", "no", "off", "")


def tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    """An SSL context from parsed URL options (`ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`,
    `ssl_cert_reqs` none|optional|required, `ssl_check_hostname`); no I/O until files load."""
    reqs_name = str(options.get("ssl_cert_reqs") or "required").lower()
    if reqs_name not in _CERT_REQS:
        raise ConfigurationError(
            f"ssl_cert_reqs={reqs_name!r} is not one of none, optional, required"
        )
    reqs = _CERT_REQS[reqs_name]
    context = ssl.create_default_context()
    context.check_hostname = reqs != ssl.CERT_NONE and _flag(
        options.get("ssl_check_hostname"), True
    )
    context.verify_mode = reqs
    ca = options.get("ssl_ca_certs")
    try:
        if ca:
            context.load_verify_locations(**{"capath" if os.path.isdir(ca) else "cafile": ca})
        if options.get("ssl_certfile"):
            context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"the URL's TLS files cannot be read: {exc}") from exc
    return context
