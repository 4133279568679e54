#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) with everything
# the harness and its tests need.  Idempotent: a second run with unchanged
# pyproject.toml and this script does nothing.
#
# torch is pinned here, and only here, to 2.13.0: on this project's machines
# that version is a local CPU wheel, while an unpinned torch would download a
# multi-GB CUDA build.  pyproject.toml keeps a range so users choose their own.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="${SAPO_VENV:-$root/.venv}"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python=$candidate; break; fi
  done
fi
if [ -z "$python" ]; then
  echo "bootstrap: no python3 found; install Python 3.11" >&2
  exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "bootstrap: creating $venv with $($python --version)" >&2
  "$python" -m venv "$venv"
fi

stamp="$venv/.sapo-bootstrap"
want=$(cat "$root/pyproject.toml" "$root/scripts/bootstrap.sh" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "bootstrap: installing dependencies (a first run takes about a minute)" >&2
  pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
  "${pip[@]}" "torch==2.13.0"
  "${pip[@]}" -e "$root[dev]"
  echo "$want" >"$stamp"
fi
