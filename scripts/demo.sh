#!/usr/bin/env bash
# Set everything up (scripts/bootstrap.sh) and run the main job.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/bootstrap.sh"
cd "$root"
exec "${SAPO_VENV:-$root/.venv}/bin/sapo-conformance" selfcheck "$@"
