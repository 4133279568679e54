#!/usr/bin/env bash
# Set everything up (scripts/bootstrap.sh) and run the full test suite.
# Extra arguments go to pytest, e.g.  scripts/test.sh -k mpmath -x
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/bootstrap.sh"
cd "$root"
# Without a GPU, Triton kernels run under its interpreter, which has to be
# selected before anything imports triton (torch.compile does).
if ! command -v nvidia-smi >/dev/null 2>&1; then export TRITON_INTERPRET=1; fi
# every framework is installed by bootstrap: a candidate that cannot run is a failure, not a skip
export SAPO_REQUIRE_ALL_CANDIDATES=1
exec "${SAPO_VENV:-$root/.venv}/bin/python" -m pytest "$@"
