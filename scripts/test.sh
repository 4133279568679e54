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
# Both cores (up to four): pytest-xdist workers, work-stealing so that the
# long tests (marked slow, scheduled first by tests/conftest.py) do not leave
# one worker idle at the end.  SAPO_TEST_WORKERS=0 runs in one process.
workers="${SAPO_TEST_WORKERS:-$(nproc 2>/dev/null || echo 1)}"
if [ "$workers" -gt 4 ]; then workers=4; fi
parallel=()
if [ "$workers" -gt 1 ]; then parallel=(-n "$workers" --dist worksteal); fi
exec "${SAPO_VENV:-$root/.venv}/bin/python" -m pytest "${parallel[@]}" "$@"
