"""Renders a corpus card in headless Chromium (Debian's `chromium`) and checks it: the screenshot
is not blank and the page logs nothing to the console. Run by Tools/test-integrations on the demo's
card; `--save PNG` keeps the screenshot (the README's docs/card.png is made this way).

    python Tools/check_card.py CARD.html [--save docs/card.png]
"""

import pathlib
import struct
import subprocess
import sys
import tempfile
import zlib


def png_rows(path):
    """The raw (filtered) scanlines of an 8-bit PNG, and its width and bytes per pixel."""
    data = pathlib.Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, channels = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8, f"bit depth {depth}"
            channels = {0: 1, 2: 3, 4: 2, 6: 4}[color]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + width * channels
    return [raw[i:i + stride] for i in range(0, len(raw), stride)], width, channels


def check(card, save=None):
    with tempfile.TemporaryDirectory() as d:
        shot = pathlib.Path(d, "card.png")
        result = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1100,1500",
             f"--screenshot={shot}", "--enable-logging=stderr", "--v=0", pathlib.Path(card).resolve().as_uri()],
            capture_output=True, text=True, timeout=120)
        assert shot.exists(), f"no screenshot: {result.stderr[-2000:]}"
        console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
        assert not console, f"console messages: {console}"
        rows, width, channels = png_rows(shot)
        # Not blank: many distinct scanlines (text, bars, tables), not one colour throughout.
        distinct = len(set(rows))
        assert distinct > 200, f"only {distinct} distinct scanlines: a blank page?"
        if save:
            pathlib.Path(save).parent.mkdir(parents=True, exist_ok=True)
            pathlib.Path(save).write_bytes(shot.read_bytes())
        print(f"card renders: {len(rows)} rows × {width} px, {distinct} distinct scanlines, no console messages")


if __name__ == "__main__":
    args = sys.argv[1:]
    save = args[args.index("--save") + 1] if "--save" in args else None
    check(args[0], save)
