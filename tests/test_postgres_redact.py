"""redact_url / redact: no password survives, whatever shape the message takes."""

import pytest

from loadgen.sinks.pg_redact import redact, redact_url, secrets_of

PW = "Sup3r:Secr%40tPw"  # percent-encoded '@' inside, ':' too


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql://alice:hunter2hunter2@db.example:5432/bench", "postgresql://alice:***@db.example:5432/bench"),
        ("postgres://alice@db/bench?password=hunter2hunter2&sslmode=require", "postgres://alice@db/bench?password=***&sslmode=require"),
        ("host=db user=alice password='hunter 2 hunter' dbname=x", "host=db user=alice password=*** dbname=x"),
        ("postgresql://db/bench", "postgresql://db/bench"),
        ("", ""),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_literal_password_is_masked_anywhere():
    url = f"postgresql://alice:{PW}@db:5432/bench"
    assert set(secrets_of(url)) == {PW, "Sup3r:Secr@tPw"}
    # libpq quotes fragments of a bad DSN back, and messages get concatenated
    message = f'invalid dsn: invalid percent-encoded token: "{PW}" (decoded Sup3r:Secr@tPw)'
    out = redact(message, url)
    assert "Secr" not in out and "***" in out


def test_short_passwords_are_not_replaced_literally_but_structure_is():
    url = "postgresql://alice:ab@db/x"
    assert redact("about ab and a cab", url) == "about ab and a cab"
    assert redact(url, url) == "postgresql://alice:***@db/x"
