#!/usr/bin/env python3
"""Deterministic test trees for measurements.

gen_tree.py DIR TOTAL_MIB [SEED]: nested directories of files from 0 bytes to 64 MiB (most
small), half compressible text-like data, half incompressible, totalling TOTAL_MIB.
"""
import os
import random
import sys


def main():
    root, total_mib = sys.argv[1], int(sys.argv[2])
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz_(){};= ") for _ in range(rng.randint(2, 12)))
             for _ in range(5000)]
    text = b" ".join(rng.choice(words) + (b"\n" if rng.random() < 0.1 else b"") for _ in range(8_000_000))
    total, n = total_mib << 20, 0
    dirs = [root]
    os.makedirs(root, exist_ok=True)
    written = 0
    while written < total:
        if rng.random() < 0.08 or len(dirs) < 4:
            d = os.path.join(rng.choice(dirs), f"d{len(dirs)}")
            os.makedirs(d, exist_ok=True)
            dirs.append(d)
        r = rng.random()
        size = rng.randint(0, 4096) if r < 0.5 else rng.randint(4096, 256 << 10) if r < 0.9 \
            else rng.randint(256 << 10, 8 << 20) if r < 0.99 else rng.randint(8 << 20, 64 << 20)
        size = min(size, total - written)
        if rng.random() < 0.5:
            # Text-like: a slice of the shared word stream (compressible, and partly shared
            # between files as real source trees are).
            start = rng.randint(0, len(text) - size - 1) if size < len(text) else 0
            data = text[start:start + size]
        else:
            data = rng.randbytes(size)  # incompressible and unique
        with open(os.path.join(rng.choice(dirs), f"f{n}.dat"), "wb") as f:
            f.write(data)
        written += size
        n += 1
    print(f"{n} files, {len(dirs)} dirs, {written >> 20} MiB in {root}")


if __name__ == "__main__":
    main()
