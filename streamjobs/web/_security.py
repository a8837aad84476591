"""CSRF tokens any dashboard process accepts, and HTTP basic auth.

A token is `nonce.signature`, the signature an HMAC of the nonce under the queue's dashboard
secret (kept in Redis, or given). It is set as a cookie and sent back in each form: a POST
passes only when the form's token equals the cookie's and the signature holds (a signed
double-submit cookie). Nothing is remembered per process, so any number of dashboard
processes behind one address accept each other's forms.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from ..errors import ConfigurationError

#: The cookie and form field carrying the token.
COOKIE = "streamjobs_csrf"
FIELD = "csrf"
HEADER = "x-csrf-token"


def new_token(secret: str) -> str:
    """A fresh signed token."""
    nonce = secrets.token_urlsafe(18)
    return f"{nonce}.{_sign(secret, nonce)}"


def valid(secret: str, cookie: str | None, sent: str | None) -> bool:
    """True when the sent token is the cookie's and carries a good signature."""
    if not cookie or not sent or not hmac.compare_digest(cookie, sent):
        return False
    nonce, _, signature = sent.partition(".")
    return bool(nonce) and hmac.compare_digest(signature, _sign(secret, nonce))


def _sign(secret: str, nonce: str) -> str:
    return hmac.new(secret.encode(), nonce.encode(), hashlib.sha256).hexdigest()


def parse_basic_auth(value: str | tuple[str, str] | None) -> tuple[str, str] | None:
    """`USER:PASS` (or a pair) as (user, password); ConfigurationError when malformed."""
    if value is None:
        return None
    if isinstance(value, tuple):
        user, password = value
    else:
        user, sep, password = value.partition(":")
        if not sep:
            raise ConfigurationError("basic auth must be USER:PASS, with a colon")
    if not user or not password:
        raise ConfigurationError("basic auth needs a user and a password, both non-empty")
    return user, password


def basic_user(header: str | None, expected: tuple[str, str]) -> str | None:
    """The user an Authorization header names when its credentials are `expected`."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    ok_user = hmac.compare_digest(user.encode(), expected[0].encode())
    ok_password = hmac.compare_digest(password.encode(), expected[1].encode())
    return user if ok_user and ok_password else None
