"""Secrets stay secret: the API key and the database password appear nowhere a run writes."""

from tests.locust_harness import run_locust
from tests.pg_fixtures import fresh_database, query

API_KEY = "e2b_0123456789abcdef0123456789abcdef"
DB_PASSWORD = "pg-Pa55word-never-shown"


def test_no_secret_in_output_run_directory_or_database(tmp_path, emulator):
    with fresh_database(password=DB_PASSWORD) as url:
        assert DB_PASSWORD in url  # trust auth ignores it, but loadgen must still never show it
        run = run_locust("local.py", 30, tmp_path, ["--emulator-url", emulator.url],
                         env={"E2B_API_KEY": API_KEY, "DATABASE_URL": url})
        assert run.returncode == 0, run.output[-3000:]
        dump = "\n".join(str(row) for table in ("runs", "sandbox_results")
                         for row in query(url, f"SELECT * FROM {table}"))
    texts = {"output": run.output, "database": dump}
    for path in run.run_path.rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode("utf-8", "replace")
    for where, text in texts.items():
        assert API_KEY not in text, where
        assert DB_PASSWORD not in text, where
    assert len(run.records) == 30
