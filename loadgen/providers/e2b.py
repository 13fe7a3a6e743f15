"""e2b, through the official `e2b` SDK's async API.

Why async: from 2.35 on the SDK's HTTP runs in a Rust client (pyqwest) whose
sync calls block gevent's hub, so 50 concurrent sandboxes would run one after
another. Its async API awaits the same client on the process's asyncio
bridge (loadgen.aio), where it never touches the hub. The transports are
process-wide caches, so every sandbox shares one connection pool, sized here
to the users in the process.

Retries: the SDK retries 429/502/503/504 (``retries``) and, separately,
failed connections (``E2B_CONNECTION_RETRIES``, read at import). Both are
turned off, since a hidden retry would hide the failure we measure.
"""

from __future__ import annotations

import logging
import os
import sys

from loadgen.providers.base import CommandResult, Provider, ProviderSettings
from loadgen.result import ErrorInfo, FailureClass, classify_exception, status_code_of, truncate

_POOL_FLOOR = 1000


def _configure_sdk_environment(users_in_process: int) -> None:
    """Set the SDK's import-time pool and retry knobs (and patch them if it is already imported)."""
    pool = str(max(_POOL_FLOOR, users_in_process * 2))
    os.environ["E2B_CONNECTION_RETRIES"] = "0"
    os.environ["E2B_MAX_CONNECTIONS"] = pool
    os.environ["E2B_MAX_KEEPALIVE_CONNECTIONS"] = pool
    for module_name in ("e2b.api", "e2b.api.client_async", "e2b.api.client_sync"):
        module = sys.modules.get(module_name)
        if module is not None:
            module.connection_retries = 0
            module.max_connections = int(pool)
            module.pool_max_idle_per_host = int(pool)


class E2BProvider(Provider):
    name = "e2b"
    required_env = ("E2B_API_KEY",)
    optional_env = ("E2B_DOMAIN", "E2B_API_URL", "E2B_SANDBOX_URL")
    asynchronous = True
    default_template = "base"

    def setup(self) -> None:
        # the SDK logs every request at INFO through httpx: 400k lines in a 100k run
        logging.getLogger("httpx").setLevel(logging.WARNING)
        _configure_sdk_environment(self.settings.users_in_process)
        from e2b import AsyncSandbox  # noqa: import after the knobs are set

        self._sandbox_class = AsyncSandbox
        self._opts = {"retries": 0, "request_timeout": self.settings.create_timeout_s + self.settings.late_create_window_s}
        if self.settings.base_url:
            # The emulator speaks plain HTTP/1.1; the real service is HTTP/2 over TLS.
            self._opts.update(
                api_url=self.settings.base_url, sandbox_url=self.settings.base_url, http_version="1.1", debug=False
            )

    async def create(self, tags: dict[str, str]):
        return await self._sandbox_class.create(
            template=self.settings.template or self.default_template,
            timeout=int(self.settings.sandbox_lifetime_s),
            metadata=tags,
            **self._opts,
        )

    async def run(self, handle, command: str, timeout: float) -> CommandResult:
        from e2b import CommandExitException

        try:
            result = await handle.commands.run(command, timeout=timeout, request_timeout=timeout)
        except CommandExitException as exc:
            return CommandResult(exc.exit_code, exc.stdout or "", exc.stderr or "")
        return CommandResult(result.exit_code, result.stdout or "", result.stderr or "")

    async def destroy(self, handle, timeout: float) -> bool:
        return await handle.kill(request_timeout=timeout, retries=0)

    def sandbox_id(self, handle):
        return handle.sandbox_id

    def metadata(self, handle):
        info = {"sandbox_id": handle.sandbox_id}
        for attr in ("sandbox_domain", "envd_version", "template_id"):
            value = getattr(handle, attr, None)
            if value is not None:
                info[attr] = value
        return info

    def classify(self, exc: BaseException) -> ErrorInfo:
        import e2b

        error_type = type(exc).__name__
        message = truncate(str(exc) or error_type)
        if isinstance(exc, e2b.RateLimitException):
            return ErrorInfo(FailureClass.HTTP_ERROR.value, 429, "rate_limited", error_type, message)
        if isinstance(exc, e2b.AuthenticationException):
            return ErrorInfo(FailureClass.HTTP_ERROR.value, 401, "unauthorized", error_type, message)
        if isinstance(exc, (e2b.SandboxNotFoundException, getattr(e2b, "SandboxNotRunningException", ()))):
            # the sandbox is gone: e2b answers "not found" for a dead sandbox's calls
            status = status_code_of(exc) or (404 if isinstance(exc, e2b.SandboxNotFoundException) else 502)
            return ErrorInfo(FailureClass.HTTP_ERROR.value, status, "sandbox_gone", error_type, message)
        if isinstance(exc, e2b.TimeoutException):
            return ErrorInfo(FailureClass.TIMEOUT.value, None, None, error_type, message)
        return classify_exception(exc)
