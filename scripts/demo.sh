#!/usr/bin/env bash
# Set everything up (scripts/bootstrap.sh) and run the main job: certify the
# torch-eager built-in and write its conformance report to reports/torch-eager/.
# Extra arguments go to `sapo-conformance run`, e.g.  scripts/demo.sh --profile quick
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/bootstrap.sh"
cd "$root"
"${SAPO_VENV:-$root/.venv}/bin/sapo-conformance" selfcheck
exec "${SAPO_VENV:-$root/.venv}/bin/sapo-conformance" run torch-eager --report-dir reports/torch-eager "$@"
