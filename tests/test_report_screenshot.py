"""The report page as a person sees it: headless Chromium renders it, and the picture is not blank.

Parsing proves the HTML is well-formed; only a browser proves it shows
something. The PNG is decoded with zlib (no imaging library needed) and must
hold many distinct colours: a blank, white or error page has a handful.
"""

from __future__ import annotations

import importlib.util
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from loadgen.report import command as report

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def decode_png(data: bytes) -> tuple:
    """(width, height, rows of RGB(A) tuples as bytes) for 8-bit RGB/RGBA, non-interlaced PNGs."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    width = height = None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride if f else 0):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def test_png_decoder_on_a_known_image():
    # 2x1 RGB: red, green; filter 0
    raw = b"\x00\xff\x00\x00\x00\xff\x00"
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    w, h, bpp, rows = decode_png(png)
    assert (w, h, bpp) == (2, 1, 3) and rows[0] == b"\xff\x00\x00\x00\xff\x00"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium)")
def test_report_page_renders_non_blank(tmp_path):
    spec = importlib.util.spec_from_file_location("stats_synth", ROOT / "bench" / "stats_synth.py")
    synth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synth)
    recs = synth.make_records(400, seed=5)
    run = synth.write_run_dir(tmp_path / "run", recs, synth.make_metrics(recs, workers=2))
    assert report.main(["report", str(run)]) == 0
    page = run / "report" / "report.html"
    shot = tmp_path / "shot.png"
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
        page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, timeout=120)
    assert shot.is_file(), proc.stderr.decode(errors="replace")[-2000:]
    w, h, bpp, rows = decode_png(shot.read_bytes())
    assert (w, h) == (1280, 2000)
    colours = set()
    for row in rows[::7]:
        for x in range(0, len(row), bpp * 5):
            colours.add(row[x : x + 3])
    assert len(colours) >= 20, f"screenshot looks blank: {len(colours)} distinct colours"
    # something other than the page background in most bands of the page
    bands = [rows[y : y + 200] for y in range(0, h, 200)]
    busy = sum(1 for band in bands if len({r[x : x + 3] for r in band[::10] for x in range(0, len(r), bpp * 8)}) > 3)
    assert busy >= len(bands) // 2
