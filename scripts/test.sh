#!/usr/bin/env bash
# Set everything up (scripts/bootstrap.sh) and run the full test suite.
# Extra arguments go to pytest, e.g.  scripts/test.sh -k mpmath -x
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/bootstrap.sh"
cd "$root"
export TRITON_INTERPRET="${TRITON_INTERPRET:-1}"
exec "${SAPO_VENV:-$root/.venv}/bin/python" -m pytest "$@"
