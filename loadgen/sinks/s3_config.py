"""Where the object store is and how to talk to it: environment -> boto3 client.

Configuration comes only from the environment, so the same command line works
against Tigris, R2, AWS S3, MinIO or a test server, and so that no secret is
ever on a command line (where `ps` and shell history would show it).

Two families of variables are understood:

- Tigris's own ``TIGRIS_STORAGE_ACCESS_KEY_ID`` / ``TIGRIS_STORAGE_SECRET_ACCESS_KEY``
  / ``TIGRIS_STORAGE_ENDPOINT``. When the Tigris key id is set it wins: it
  names object storage specifically, whereas ``AWS_*`` keys in the same
  environment often belong to something else (an EC2 role, a CI account).
- The standard AWS ones (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
  ``AWS_SESSION_TOKEN``, ``AWS_REGION``/``AWS_DEFAULT_REGION``,
  ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``, profiles and roles), resolved
  by boto3's ordinary chain.

Secrets are kept out of every message: `S3Settings` never puts them in its
repr, `describe()` names where credentials came from but not what they are,
and `Redactor` masks their values in anything we log, raise or upload.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Mapping, Optional
from urllib.parse import urlsplit, urlunsplit

TIGRIS_ENDPOINT = "https://t3.storage.dev"
ADDRESSING_ENV = "LOADGEN_S3_ADDRESSING_STYLE"
ASSEMBLE_ENV = "LOADGEN_S3_ASSEMBLE"
ADDRESSING_STYLES = ("auto", "path", "virtual")
ASSEMBLE_MODES = ("auto", "copy", "stream")

# Secrets shorter than this are not masked inside uploaded data: masking a
# 4-character dummy key would corrupt ordinary text, and real keys are 20+.
MIN_MASKED_SECRET = 12


class ConfigError(ValueError):
    """The environment does not describe a usable object store; the message names the fix."""


@dataclass(frozen=True)
class S3Settings:
    provider: str  # tigris | r2 | aws | custom: picks defaults, shown in logs
    endpoint_url: Optional[str]
    region: str
    addressing_style: str
    assemble: str  # how raw.jsonl is assembled: copy | stream (auto resolved here)
    credentials_source: str
    access_key_id: Optional[str] = field(default=None, repr=False)
    secret_access_key: Optional[str] = field(default=None, repr=False)
    session_token: Optional[str] = field(default=None, repr=False)

    def describe(self) -> str:
        """One log line that helps someone fix a misconfiguration without showing a secret."""
        endpoint = safe_url(self.endpoint_url) if self.endpoint_url else "AWS S3 default endpoint"
        return (
            f"{endpoint} (provider {self.provider}, region {self.region}, "
            f"{self.addressing_style} addressing, credentials from {self.credentials_source})"
        )

    def secrets(self) -> list[str]:
        return [s for s in (self.access_key_id, self.secret_access_key, self.session_token) if s]


def safe_url(url: str) -> str:
    """An endpoint URL without any user:password@ part, fit for a log line."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        parts = parts._replace(netloc=host)
    return urlunsplit(parts)


def provider_of(endpoint_url: Optional[str]) -> str:
    if not endpoint_url:
        return "aws"
    host = (urlsplit(endpoint_url).hostname or "").lower()
    if host.endswith("storage.dev") or host.endswith("tigris.dev"):
        return "tigris"
    if host.endswith("r2.cloudflarestorage.com"):
        return "r2"
    if host.endswith("amazonaws.com"):
        return "aws"
    return "custom"


def _is_ip_or_localhost(endpoint_url: Optional[str]) -> bool:
    host = (urlsplit(endpoint_url or "").hostname or "").lower()
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def settings_from_env(environ: Optional[Mapping[str, str]] = None) -> S3Settings:
    """Resolve endpoint, region, addressing and credentials; see the module docstring for precedence."""
    env = os.environ if environ is None else environ
    get = lambda name: (env.get(name) or "").strip() or None  # noqa: E731

    if get("TIGRIS_STORAGE_ACCESS_KEY_ID"):
        if not get("TIGRIS_STORAGE_SECRET_ACCESS_KEY"):
            raise ConfigError(
                "TIGRIS_STORAGE_ACCESS_KEY_ID is set but TIGRIS_STORAGE_SECRET_ACCESS_KEY is not; set both"
            )
        endpoint = get("TIGRIS_STORAGE_ENDPOINT") or TIGRIS_ENDPOINT
        key_id, secret, token = get("TIGRIS_STORAGE_ACCESS_KEY_ID"), get("TIGRIS_STORAGE_SECRET_ACCESS_KEY"), None
        source = "TIGRIS_STORAGE_* variables"
        region = get("AWS_REGION") or get("AWS_DEFAULT_REGION") or "auto"
    else:
        endpoint = get("AWS_ENDPOINT_URL_S3") or get("AWS_ENDPOINT_URL")
        key_id, secret, token = get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY"), get("AWS_SESSION_TOKEN")
        if key_id and not secret:
            raise ConfigError("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not; set both")
        source = "AWS_* variables" if key_id else "the boto3 default chain (profile, SSO or instance role)"
        default_region = "auto" if provider_of(endpoint) in ("tigris", "r2") else "us-east-1"
        region = get("AWS_REGION") or get("AWS_DEFAULT_REGION") or default_region
    provider = provider_of(endpoint)

    style = (get(ADDRESSING_ENV) or "").lower()
    if style and style not in ADDRESSING_STYLES:
        raise ConfigError(f"{ADDRESSING_ENV}={style!r}: choose one of {', '.join(ADDRESSING_STYLES)}")
    if not style:
        # Tigris documents virtual-hosted addressing. botocore's "auto" means
        # path style whenever an endpoint URL is given, which is what MinIO
        # and moto on 127.0.0.1 need; "virtual" on localhost would send
        # requests to bucket.localhost, which does not resolve.
        style = "virtual" if provider == "tigris" and not _is_ip_or_localhost(endpoint) else "auto"

    assemble = (get(ASSEMBLE_ENV) or "auto").lower()
    if assemble not in ASSEMBLE_MODES:
        raise ConfigError(f"{ASSEMBLE_ENV}={assemble!r}: choose one of {', '.join(ASSEMBLE_MODES)}")
    if assemble == "auto":
        # R2 wants every multipart part but the last to be the same size, which
        # server-side copies of variable-size chunks cannot give.
        assemble = "stream" if provider == "r2" else "copy"

    return S3Settings(
        provider=provider,
        endpoint_url=endpoint,
        region=region,
        addressing_style=style,
        assemble=assemble,
        credentials_source=source,
        access_key_id=key_id,
        secret_access_key=secret,
        session_token=token,
    )


def make_client(
    settings: S3Settings,
    *,
    max_attempts: int = 5,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
    max_pool_connections: int = 16,
    user_agent: str = "loadgen-objectstore",
    checksums: Optional[str] = None,
):
    """A boto3 S3 client with botocore's standard retry mode (backoff with jitter, retries on
    throttling, 5xx and connection errors; ``max_attempts=1`` is no retry at all). ``checksums``
    ("when_required") turns botocore's optional CRC checksums of requests and answers off.
    Returns (client, secrets to redact)."""
    import boto3
    import botocore.config

    session = boto3.session.Session(
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        aws_session_token=settings.session_token,
        region_name=settings.region,
    )
    credentials = session.get_credentials()
    if credentials is None:
        raise ConfigError(
            "no object-store credentials: set TIGRIS_STORAGE_ACCESS_KEY_ID and TIGRIS_STORAGE_SECRET_ACCESS_KEY, "
            "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus AWS_ENDPOINT_URL_S3 for R2/MinIO)"
        )
    frozen = credentials.get_frozen_credentials()
    secrets = [s for s in (frozen.access_key, frozen.secret_key, frozen.token) if s]
    extra = {} if checksums is None else {"request_checksum_calculation": checksums,
                                          "response_checksum_validation": checksums}
    config = botocore.config.Config(
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_pool_connections,
        s3={"addressing_style": settings.addressing_style},
        user_agent_extra=user_agent,
        **extra,
    )
    client = session.client("s3", endpoint_url=settings.endpoint_url, config=config)
    return client, secrets


class Redactor:
    """Masks known secret values in text we log/raise and in bytes we upload.

    Byte masking keeps the length (each secret becomes as many ``*``), so chunk
    offsets and sizes still match the local file and JSON stays valid.
    """

    def __init__(self, secrets=()):
        self._text: list[str] = []
        self._bytes: list[bytes] = []
        self.add(secrets)

    def add(self, secrets) -> None:
        self._text = sorted(set(self._text) | {s for s in secrets if s}, key=len, reverse=True)
        self._bytes = [s.encode() for s in self._text if len(s) >= MIN_MASKED_SECRET]

    def text(self, message: object) -> str:
        message = str(message)
        for secret in self._text:
            if secret in message:
                message = message.replace(secret, "***")
        return message

    def data(self, payload: bytes) -> bytes:
        for secret in self._bytes:
            if secret in payload:
                payload = payload.replace(secret, b"*" * len(secret))
        return payload
