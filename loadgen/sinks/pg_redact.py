"""Keep database credentials out of logs and error messages.

A run's logs travel: coordinator.log is uploaded to object storage, CI prints
stderr, people paste errors into issues. The database URL carries a password,
and libpq echoes pieces of a connection string back in its errors (for
instance ``invalid percent-encoded token: "p%zzsecret"``), so redacting the URL
we print is not enough: every message the Postgres sink emits goes through
``redact()``, which removes the password wherever it appears as well as
anything shaped like one.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional
from urllib.parse import unquote

MASK = "***"

# user:password@ in a URL (the password may be percent-encoded, may contain ':').
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@\s]*)@")
# password=... as a URL query parameter or a key=value DSN word, quoted or not.
_KEYWORD = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|sslpassword|pgpassword)\b\s*=\s*)(?P<val>'(?:[^'\\]|\\.)*'|\"[^\"]*\"|[^\s&'\"]+)",
    re.IGNORECASE,
)

# A password shorter than this is not replaced literally (it would mangle
# ordinary words); the structural patterns above still hide it.
_MIN_LITERAL = 4


def redact_url(url: Optional[str]) -> str:
    """The URL with its password replaced by ***, safe to print."""
    if not url:
        return ""
    return redact(url, url)


def secrets_of(url: Optional[str]) -> list[str]:
    """Passwords found in a URL or key=value DSN, raw and percent-decoded."""
    if not url:
        return []
    found = []
    for match in _URL_USERINFO.finditer(url):
        found.append(match.group("pw"))
    for match in _KEYWORD.finditer(url):
        value = match.group("val")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found.append(value)
    out = []
    for secret in found:
        for form in (secret, unquote(secret)):
            if form and form not in out:
                out.append(form)
    return out


def redact(text: object, *urls: Optional[str], secrets: Iterable[str] = ()) -> str:
    """``text`` as a string with the passwords of ``urls`` (and ``secrets``) masked.

    Structural patterns first (user:pw@, password=...), then any literal
    occurrence of a known password, longest first so that a password that
    contains another is masked whole.
    """
    out = str(text)
    out = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", out)
    out = _KEYWORD.sub(lambda m: f"{m.group('key')}{MASK}", out)
    literals = set(secrets)
    for url in urls:
        literals.update(secrets_of(url))
    for secret in sorted(literals, key=len, reverse=True):
        if secret and len(secret) >= _MIN_LITERAL and secret != MASK:
            out = out.replace(secret, MASK)
    return out
