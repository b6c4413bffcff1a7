#!/usr/bin/env bash
# Back up a sample volume to a simulated tape and restore it byte for byte.
set -euo pipefail
dir=demo
rm -rf "$dir"; mkdir -p "$dir"
# the demo keeps its own catalog beside its tape, never the user's (whatever TAPEARC_CATALOG or
# XDG_DATA_HOME say): it erases both on every run, and a catalog that remembers an erased tape
# rightly refuses to take it for a blank one
export TAPEARC_CATALOG="$PWD/$dir/catalog.sqlite"
echo "== catalog: $TAPEARC_CATALOG (the demo's own)"
python - "$dir/volume.img" <<'PY'
import os, random, sys
# 24 MiB: random data, a long run of zeros, repeated text, and a partial last block
rng = random.Random(42)
with open(sys.argv[1], "wb") as f:
    f.write(rng.randbytes(8 << 20))
    f.write(bytes(8 << 20))
    f.write((b"tapearc demo volume " * 419431)[: 8 << 20])
    f.write(rng.randbytes(12345))
PY
echo "== tapesim new: a blank 64 MiB simulated tape"
tapesim new "$dir/tape.tap" --capacity 64M
echo "== tapearc label: its label text, as a barcode would be"
tapearc label --media "sim:$dir/tape.tap" --text DEMO01
echo "== tapearc backup"
tapearc backup "$dir/volume.img" --media "sim:$dir/tape.tap" --compress zstd
echo "== tapearc list"
tapearc list --media "sim:$dir/tape.tap"
echo "== tapesim info (the simulator's view of the same tape)"
tapesim info "$dir/tape.tap"
echo "== tapearc restore"
tapearc restore --media "sim:$dir/tape.tap" --to "$dir/restored.img"
cmp "$dir/volume.img" "$dir/restored.img" && echo "== restored image is byte-identical to the volume"
echo "== tapearc backup again: an incremental (the volume's first 64 KiB changed)"
python - "$dir/volume.img" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.write(b"changed " * 8192)
PY
tapearc backup "$dir/volume.img" --media "sim:$dir/tape.tap" --compress zstd
echo "== tapearc catalog generations (and the media each needs to be restored)"
tapearc catalog generations
echo "== tapearc catalog media"
tapearc catalog media
