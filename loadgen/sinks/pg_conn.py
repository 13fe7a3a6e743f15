"""Connections to Postgres that never block the gevent hub and never leak a password.

psycopg2 is a C extension: left alone, a query blocks the whole process, and
with it every greenlet that is timing a sandbox. psycogreen installs a wait
callback so psycopg2 yields to gevent while it waits on the socket. The
callback is process-wide and has one cost worth knowing: psycopg2 refuses
COPY on a connection in green mode, which is why the sink ships a batch as
one text parameter instead (see pg_sql.py).

Errors leave this module as ``PostgresSinkError`` whose message went through
``redact()``; the psycopg2 exception is not chained, because a chained
traceback would print its message (which may quote the DSN) anyway.
"""

from __future__ import annotations

from typing import Optional

import gevent
import psycopg2
import psycopg2.extensions

from loadgen.sinks.pg_redact import redact

# TCP keepalives: a database that vanishes mid-query (VM gone, network
# partition) is noticed in about a minute instead of hanging a sync forever.
KEEPALIVES = dict(keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3)
APPLICATION_NAME = "loadgen"


class PostgresSinkError(Exception):
    """A database operation failed; the message is redacted and names what to do.

    ``fix`` is set when waiting cannot help (see ``permanent_fix``): what the user must change."""

    fix: Optional[str] = None


# Connection errors that no retry cures, by what libpq says, and what to change.
PERMANENT = (
    (("invalid dsn", "invalid connection option", "invalid uri", "invalid integer value", "missing \"=\"",
      "invalid percent-encoded", "invalid sslmode"),
     "the database URL is malformed: write it as postgresql://USER@HOST:PORT/DATABASE"),
    (("could not translate host name", "name or service not known", "nodename nor servname"),
     "the database host is unknown: fix the host name in the URL"),
    (("connection refused",), "nothing accepts connections at that host and port: fix the host or port, "
                              "or start Postgres"),
    (("no route to host", "network is unreachable"), "the database host cannot be reached: fix the host"),
    (("password authentication failed", "authentication failed", "no pg_hba.conf entry", "password is required",
      "peer authentication", 'role "'), "the database refused the login: fix the user or password (not shown here)"),
    (("does not exist",), "the database does not exist: create it (createdb NAME) or fix the URL"),
)


def permanent_fix(exc: BaseException) -> Optional[str]:
    """What to change when ``exc`` (from connecting) is one that retrying cannot cure, else None."""
    text = str(exc).lower()
    for needles, fix in PERMANENT:
        if any(n in text for n in needles):
            return fix
    return None


def make_green() -> None:
    """Install psycogreen's gevent wait callback once per process."""
    if psycopg2.extensions.get_wait_callback() is None:
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()


def connect(database_url: str, *, connect_timeout: float = 10.0):
    """An autocommit=False psycopg2 connection, green, with keepalives.

    libpq's connect_timeout does not apply to the asynchronous connect that
    green mode uses, so a gevent timeout bounds it instead (a black-holed
    host would otherwise hang until the kernel gives up, minutes later).
    """
    if not database_url:
        raise PostgresSinkError("no database URL: pass --database-url or set DATABASE_URL")
    make_green()
    err: Optional[PostgresSinkError] = None
    try:
        with gevent.Timeout(connect_timeout, False):
            conn = psycopg2.connect(
                database_url,
                connect_timeout=max(1, int(connect_timeout)),
                application_name=APPLICATION_NAME,
                **KEEPALIVES,
            )
            return conn
        err = PostgresSinkError(
            f"cannot connect to {redact(database_url, database_url)}: no answer within {connect_timeout:g}s"
        )
    except psycopg2.Error as exc:
        err = describe(exc, database_url, "cannot connect to " + redact(database_url, database_url))
        err.fix = permanent_fix(exc)
    if err is not None:
        raise err
    raise AssertionError("unreachable")


def describe(exc: BaseException, database_url: str, doing: str) -> PostgresSinkError:
    """A redacted, self-explaining error for ``exc`` raised while ``doing``."""
    kind = type(exc).__name__
    code = getattr(exc, "pgcode", None)
    text = " ".join(str(exc).split()) or kind
    message = f"{doing}: {kind}{f' [{code}]' if code else ''}: {text}"
    return PostgresSinkError(redact(message, database_url))


def close_quietly(conn) -> None:
    if conn is None:
        return
    try:
        conn.close()
    except Exception:
        pass
