"""`loadgen report`: files written, SVGs well-formed, HTML valid, Markdown sane, clear errors."""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import orjson
import pytest

from loadgen.report import charts, command as report, stats
from loadgen.report.compare import SCORE_FORMULA, leaderboard, score

ROOT = Path(__file__).resolve().parent.parent


def _synth():
    spec = importlib.util.spec_from_file_location("stats_synth", ROOT / "bench" / "stats_synth.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


synth = _synth()

SVG_NS = "{http://www.w3.org/2000/svg}"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class StrictChecker(HTMLParser):
    """Every non-void element closed, in order; SVG elements may self-close."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack = []
        self.problems = []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append((tag, self.getpos()))

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1][0] != tag:
            self.problems.append(f"unexpected </{tag}> at {self.getpos()}, open: {self.stack[-3:]}")
            return
        self.stack.pop()


def check_html(text: str) -> None:
    assert text.startswith("<!DOCTYPE html>")
    p = StrictChecker()
    p.feed(text)
    p.close()
    assert not p.problems, p.problems[:5]
    assert not p.stack, f"unclosed: {p.stack[:5]}"
    try:
        import html5lib
    except ImportError:  # optional: the stdlib check above always runs
        return
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    parser.parse(text)  # raises ParseError on the first error


def check_svg(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == SVG_NS + "svg"
    assert root.find(SVG_NS + "title") is not None
    texts = [t.text or "" for t in root.iter(SVG_NS + "text")]
    assert any(t.strip() for t in texts)
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs") / "run-a"
    recs = synth.make_records(1200, seed=7, run_id="run-a")
    synth.write_run_dir(d, recs, synth.make_metrics(recs, workers=2, busy=True),
                        {"run_id": "run-a", "provider": "e2b", "commit": "deadbeef", "status": "done"})
    return d


@pytest.fixture(scope="module")
def written(run_dir):
    assert report.main(["report", str(run_dir)]) == 0
    return run_dir / "report"


def test_report_writes_every_file(written):
    names = {p.name for p in written.iterdir()}
    assert {"report.html", "summary.md", "stats.json", "latency_hist.svg", "latency_cdf.svg", "tti_cdf.svg",
            "concurrency.svg", "status_strip.svg", "hub_lag.svg", "cpu.svg"} <= names


def test_every_svg_is_well_formed_xml_with_labelled_axes(written):
    svgs = sorted(written.glob("*.svg"))
    assert len(svgs) == 7
    for path in svgs:
        root = check_svg(path.read_text())
        labels = " ".join(t.text or "" for t in root.iter(SVG_NS + "text"))
        if path.stem in ("latency_hist", "latency_cdf"):
            assert "create latency (ms)" in labels
        if path.stem == "hub_lag":
            assert "hub lag p99 (ms)" in labels and "saturation limit 100 ms" in labels


def test_html_is_valid_self_contained_and_warns_on_saturation(written):
    text = (written / "report.html").read_text()
    check_html(text)
    assert text.count("<svg") == 7
    assert "src=" not in text and "href=" not in text  # nothing external to load
    assert "The load generator was saturated" in text
    assert 'class="warn"' in text


def test_stats_json_equals_compute(written, run_dir):
    from loadgen import rundir

    recs = rundir.read_records(run_dir)
    metrics = list(rundir.iter_jsonl(run_dir / "metrics.jsonl"))
    got = orjson.loads((written / "stats.json").read_bytes())
    want = orjson.loads(orjson.dumps(stats.compute(recs, metrics)))
    assert got == want


def test_summary_markdown(written):
    md = (written / "summary.md").read_text()
    assert md.startswith("## loadgen: e2b `run-a`")
    assert "> [!WARNING]" in md
    assert "| TTI (create + first command) |" in md
    for line in md.splitlines():
        if line.startswith("|"):
            assert line.endswith("|")
    assert "nearest rank" in md


def test_report_without_meta_or_metrics(tmp_path, capsys):
    d = synth.write_run_dir(tmp_path / "bare", synth.make_records(50, seed=2))
    out = tmp_path / "elsewhere"
    assert report.main(["report", str(d), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed
    text = (out / "report.html").read_text()
    check_html(text)
    assert "No generator health samples" in text
    for p in out.glob("*.svg"):
        check_svg(p.read_text())


def test_compare(tmp_path, run_dir):
    b = synth.write_run_dir(tmp_path / "b", synth.make_records(300, seed=9, provider="daytona", run_id="run-b"))
    out = tmp_path / "cmp"
    assert report.main(["report", "--compare", str(run_dir), str(b), "--out", str(out)]) == 0
    check_html((out / "compare.html").read_text())
    root = check_svg((out / "tti_cdf_compare.svg").read_text())
    assert len(root.findall(SVG_NS + "path")) == 2
    md = (out / "compare.md").read_text()
    assert SCORE_FORMULA in md and SCORE_FORMULA in (out / "compare.html").read_text()
    assert "| 1 |" in md and "| 2 |" in md


def test_score_formula_and_ranking():
    assert score(1.0, 0, 0, 0) == 100.0
    assert score(1.0, 1000, 1000, 1000) == 50.0
    assert score(0.5, 1000, 1000, 1000) == 25.0
    assert score(None, 1, 1, 1) is None and score(1.0, None, 1, 1) is None

    def run(label, ok, tti):
        recs = [{"sandbox_idx": i, "status": "success" if i < ok else "failed", "sandbox_id": "x",
                 "latency_ms": tti, "first_command_ms": 0.0, "destroy_ok": True} for i in range(10)]
        return {"label": label, "provider": label, "run_id": label, "stats": stats.compute(recs)}

    board = leaderboard([run("slow", 10, 3000.0), run("fast", 10, 500.0), run("flaky", 5, 100.0)])
    assert [r["label"] for r in board] == ["fast", "flaky", "slow"]
    assert [r["rank"] for r in board] == [1, 2, 3]


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: None, "no such run directory"),
        (lambda d: d.mkdir(), "has no raw.jsonl"),
        (lambda d: (d.mkdir(), (d / "raw.jsonl").write_bytes(b"")), "holds no results"),
        (lambda d: (d.mkdir(), (d / "raw.jsonl").write_bytes(b"{not json\n")), "cannot read"),
    ],
)
def test_bad_input_gives_one_line_error(tmp_path, capsys, setup, message):
    d = tmp_path / "run"
    setup(d)
    assert report.main(["report", str(d)]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("loadgen report: ")


def test_markdown_cells_cannot_break_tables_or_inject_html():
    from loadgen.report.render import md_cell

    assert md_cell("401: a | b\nc <img src=x>&") == "401: a \\| b c &lt;img src=x&gt;&amp;"
    assert len(md_cell("x" * 500)) == 160


def test_usage_error_exits_non_zero():
    with pytest.raises(SystemExit) as exc:
        report.main(["report"])
    assert exc.value.code != 0


def test_chart_helpers_handle_edge_cases():
    for svg in (
        charts.histogram_svg([], "t", "x"),
        charts.histogram_svg([5.0], "one value", "x"),
        charts.histogram_svg([1.0] * 10 + [1e6], "tail", "x"),
        charts.cdf_svg([("a", [])], "empty", "x"),
        charts.cdf_svg([("a", [0.0, 0.0, 1.0])], "zeros", "x"),
        charts.lines_svg([], "none", "x", "y"),
        charts.lines_svg([("a", [(0, 1)])], "one point", "x", "y", hline=(5, "limit <5> & co")),
        charts.status_strip_svg([], "none"),
        charts.status_strip_svg(["success", "weird<status>"], "odd"),
    ):
        check_svg(svg)
    assert charts.nice_ticks(0, 100) == [0, 20, 40, 60, 80, 100]
    assert charts.nice_ticks(0, 100, n=11) == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert charts.log_ticks(1, 100) == [1, 2, 5, 10, 20, 50, 100]
