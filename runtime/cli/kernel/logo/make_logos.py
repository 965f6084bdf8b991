#!/usr/bin/env python3
"""Draws the kernel's logos (logo-32x32.png, logo-64x64.png) with nothing but
the standard library: a dark tile with a row of feature activations, most
near zero and two firing, the picture of a sparse code.

    python3 runtime/cli/kernel/logo/make_logos.py
"""
import pathlib
import struct
import zlib

BACKGROUND = (27, 42, 73)
QUIET = (92, 120, 170)
FIRING = (242, 142, 43)
# Bar heights as fractions of the tile's inner height.
BARS = [0.12, 0.08, 0.85, 0.1, 0.14, 0.6, 0.09]


def pixel(x, y, size):
    radius = size * 0.18
    # Rounded corners: transparent outside the quarter circles.
    cx = min(max(x + 0.5, radius), size - radius)
    cy = min(max(y + 0.5, radius), size - radius)
    if (x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 > radius**2:
        return (0, 0, 0, 0)
    margin = size * 0.16
    inner = size - 2 * margin
    slot = inner / len(BARS)
    column = int((x - margin) // slot) if margin <= x < size - margin else -1
    if 0 <= column < len(BARS):
        within = (x - margin) - column * slot
        height = BARS[column] * inner
        base = size - margin
        if slot * 0.18 <= within <= slot * 0.82 and base - height <= y < base:
            color = FIRING if BARS[column] > 0.5 else QUIET
            return color + (255,)
    return BACKGROUND + (255,)


def png(size):
    rows = b"".join(
        b"\x00" + bytes(c for x in range(size) for c in pixel(x, y, size)) for y in range(size)
    )

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


if __name__ == "__main__":
    here = pathlib.Path(__file__).parent
    for size in (32, 64):
        (here / f"logo-{size}x{size}.png").write_bytes(png(size))
