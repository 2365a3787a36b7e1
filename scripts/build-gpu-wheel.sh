#!/usr/bin/env bash
# Build clgemm's abi3 wheel here (Rust toolchain needed) for the GPU machine, which has
# Python 3.12 and no Rust. The wheel is tagged cp311-abi3, so any CPython >= 3.11 loads it.
#
#   scripts/build-gpu-wheel.sh            # -> .carry/wheels/clgemm-<ver>-cp311-abi3-<plat>.whl
#
# On the GPU machine (the wheel travels in git-ignored .carry/):
#   pip install --no-deps --no-index .carry/wheels/clgemm-*.whl
# or, to use the source tree as is, unzip only the extension next to the sources:
#   python -m zipfile -e .carry/wheels/clgemm-*.whl /tmp/w && cp /tmp/w/clgemm/_engine*.so src/clgemm/
set -euo pipefail
cd "$(dirname "$0")/.."
out=.carry/wheels
mkdir -p "$out"
rm -f "$out"/clgemm-*.whl
python -m maturin build --release -o "$out" "$@"
wheel=$(ls "$out"/clgemm-*.whl)
case "$wheel" in
  *-cp311-abi3-*) ;;
  *) echo "error: $wheel is not tagged cp311-abi3; check [tool.maturin] features in pyproject.toml" >&2; exit 1 ;;
esac
# The .so must import in a clean Python 3.11 (no source tree on the path).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python -m zipfile -e "$wheel" "$tmp"
(cd "$tmp" && python -c "import sys; sys.path.insert(0, '.'); import clgemm._engine as e; \
print('ok:', e.__file__, 'engine', e.__version__, 'python', sys.version.split()[0])")
echo "built $wheel"
