#!/usr/bin/env bash
# Parity with PyTorch itself, where torch is importable (not in ctest: CI does not download torch).
# Regenerates the reference vectors with the torch found (gen_ref.py) and compares them, byte for
# byte, with the committed tests/adam_ref/adam_ref.bin that ctest's adam_torch checks libzero
# against on every path: equal bytes mean this torch computes what the committed vectors say,
# so libzero (ctest adam_torch passing) computes this torch's bits.
#   tests/adam_ref/check_live.sh [PYTHON]     (default: /opt/torch-venv/bin/python, else python3)
# Exit 0 equal, 1 different, 77 no torch.
set -u
here=$(cd "$(dirname "$0")" && pwd)
py=${1:-}
[ -z "$py" ] && { [ -x /opt/torch-venv/bin/python ] && py=/opt/torch-venv/bin/python || py=python3; }
if ! "$py" -c "import torch, numpy" 2>/dev/null; then
    echo "check_live: SKIP: torch and numpy are not importable by $py" \
         "(python3 -m venv v && v/bin/pip install torch numpy --index-url https://download.pytorch.org/whl/cpu)"
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" "$here/gen_ref.py" --out "$tmp" || { echo "check_live: gen_ref.py failed"; exit 1; }
echo "torch: $("$py" -c 'import torch; print(torch.__version__)')"
if cmp -s "$tmp/adam_ref.bin" "$here/adam_ref.bin"; then
    echo "check_live: PASS: this torch gives the committed reference bytes ($(wc -c <"$here/adam_ref.bin") bytes)"
    exit 0
fi
echo "check_live: FAIL: this torch's vectors differ from the committed ones (cmp below)"
cmp "$tmp/adam_ref.bin" "$here/adam_ref.bin" | head -3
exit 1
