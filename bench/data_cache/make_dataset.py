#!/usr/bin/env python3
"""Writes N distinct 64x64 RGB PNGs with a caption file each (Python's standard library only).

usage: make_dataset.py N DIR
Image k is a gradient whose colours and slope come from k, so every file has its own content
(and its own latent-cache entry); its caption names a few tags derived from k.
"""
import os
import struct
import sys
import zlib

TAGS = ["red", "green", "blue", "stripes", "dots", "dawn", "dusk", "studio", "outdoors", "macro",
        "portrait", "landscape", "blurry", "sharp", "film grain", "pastel"]


def png(width, height, rows):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + row for row in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def image(k, size=64):
    r0, g0, b0 = (k * 37) % 256, (k * 91) % 256, (k * 53) % 256
    slope = 1 + k % 7
    rows = []
    for y in range(size):
        row = bytearray()
        for x in range(size):
            row += bytes(((r0 + slope * x) % 256, (g0 + slope * y) % 256, (b0 + x + y + k // 256) % 256))
        rows.append(bytes(row))
    return png(size, size, rows)


def main():
    n, out = int(sys.argv[1]), sys.argv[2]
    os.makedirs(out, exist_ok=True)
    for k in range(n):
        name = os.path.join(out, f"{k:06d}")
        with open(name + ".png", "wb") as f:
            f.write(image(k))
        tags = ", ".join(TAGS[(k * m) % len(TAGS)] for m in (1, 3, 5))
        with open(name + ".txt", "w") as f:
            f.write(f"sks pattern {k}, {tags}\n")


if __name__ == "__main__":
    main()
