#!/usr/bin/env bash
# Certify the SAPO code of real frameworks, each from its own installed
# package, and write the matrix: frameworks/README.md and matrix.html.
#
# One environment per framework (their pins conflict), under .frameworks/
# (SAPO_FRAMEWORKS_ENVS), kept between runs and rebuilt only when its pins
# change (a changed pyproject.toml reinstalls this project alone).  torch is pinned to 2.13.0 in every
# one (a local CPU wheel on this project's machines).  The frameworks and
# their versions are data: conformance/frameworks/__init__.py, FRAMEWORKS.
#
#   bash scripts/frameworks.sh                 # every framework, --profile default
#   SAPO_FRAMEWORKS_PROFILE=quick bash scripts/frameworks.sh verl
#
# A package that cannot be installed here is reported in the matrix with the
# reason (frameworks/reports/NAME/install-error.txt); nothing pretends it ran.
#
# Each run is compared with frameworks/expected/NAME.toml (the findings it is
# known to have, with reasons: conformance/frameworks/expected.py).  Any
# difference -- a new finding, a fixed one, a framework with an expected file
# that could not be installed or run -- is printed and makes the command exit 1
# once the matrix is written.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/bootstrap.sh"
envs="${SAPO_FRAMEWORKS_ENVS:-$root/.frameworks}"
profile="${SAPO_FRAMEWORKS_PROFILE:-default}"
out="$root/frameworks"
python="$root/.venv/bin/python"
mkdir -p "$envs" "$out/reports"
constraints="$envs/constraints.txt"
echo "torch==2.13.0" >"$constraints"
pip_quiet=(--quiet --disable-pip-version-check)

# name env package version module pip-args needs checks (one line each; lists comma-separated, "-" for none)
listing=$("$python" -c '
from conformance.frameworks import FRAMEWORKS
for f in FRAMEWORKS:
    print(f.name, f.env_name, f.package, f.version, f.module, ",".join(f.pip_args) or "-", ",".join(f.needs) or "-",
          ",".join(f.checks) or "-")')
wanted=("$@")
differ=()

while read -r name env_name package version module pip_args needs checks; do
  if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " == *" $name "* ]]; then continue; fi
  env="$envs/$env_name"
  report="$out/reports/$name"
  expected="$out/expected/$name.toml"
  mkdir -p "$report"
  rm -f "$report/install-error.txt"
  [ "$pip_args" = "-" ] && pip_args=""
  [ "$needs" = "-" ] && needs=""
  [ "$checks" = "-" ] && checks=""
  pip_args=${pip_args//,/ }
  needs=${needs//,/ }
  check_args=()
  for c in ${checks//,/ }; do check_args+=("--check=$c"); done
  stamp="$env/.sapo-frameworks"
  want=$(printf "%s %s %s %s\n" "$package" "$version" "$pip_args" "$needs" | sha256sum | cut -d" " -f1)
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "frameworks: installing $package==$version into $env" >&2
    start=$(date +%s)
    rm -rf "$env"
    # shellcheck disable=SC2086  # pip_args and needs are lists of words
    if ! { python3.11 -m venv "$env" \
           && "$env/bin/python" -m pip install "${pip_quiet[@]}" "torch==2.13.0" \
           && "$env/bin/python" -m pip install "${pip_quiet[@]}" -c "$constraints" -e "$root[torch]" mpmath $needs \
           && "$env/bin/python" -m pip install "${pip_quiet[@]}" -c "$constraints" $pip_args "$package==$version"; \
         } >"$report/install.log" 2>&1; then
      { echo "cannot install $package==$version here:"; grep -i "error" "$report/install.log" | head -3; } \
        >"$report/install-error.txt"
      echo "frameworks: $name: install failed (see $report/install.log)" >&2
      rm -f "$report/report.json"
      [ -f "$expected" ] && differ+=("$name: not installed here, but $expected expects a run")
      continue
    fi
    echo "$want" >"$stamp"
    echo "frameworks: $name installed in $(( $(date +%s) - start )) s, $(du -sh "$env" | cut -f1)" >&2
  fi
  # this project changed (e.g. a new entry point): reinstall it alone, not the framework
  # (keyed by this checkout's path too: an environment cached for another clone imports that clone)
  project=$( { cat "$root/pyproject.toml"; echo "$root"; } | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$env/.sapo-project" 2>/dev/null || true)" != "$project" ]; then
    "$env/bin/python" -m pip install "${pip_quiet[@]}" --no-deps -e "$root" >>"$report/install.log" 2>&1
    echo "$project" >"$env/.sapo-project"
  fi
  echo "frameworks: certifying $name ($package $version, profile $profile)" >&2
  code=0
  "$env/bin/sapo-conformance" run "$name" --profile "$profile" --throughput none --quiet --report-dir "$report" \
    "${check_args[@]}" >"$report/terminal.txt" 2>&1 || code=$?
  head -n 12 "$report/terminal.txt" >&2
  if [ "$code" -ge 2 ]; then
    echo "frameworks: $name: run exited $code (see $report/terminal.txt)" >&2
    differ+=("$name: the run exited $code (see $report/terminal.txt)")
  elif [ -f "$expected" ]; then
    if ! lines=$("$python" -m conformance.frameworks.expected "$expected" "$report/report.json"); then
      while IFS= read -r line; do differ+=("$name: $line"); done <<<"$lines"
    fi
  fi
done <<<"$listing"

"$python" -m conformance.frameworks.matrix "$out" >/dev/null
"$python" -m conformance.frameworks.evidence "$out"
if [ ${#differ[@]} -gt 0 ]; then
  echo "frameworks: the matrix differs from frameworks/expected/ in ${#differ[@]} places:" >&2
  printf '  %s\n' "${differ[@]}" >&2
  exit 1
fi
echo "frameworks: every run matches frameworks/expected/" >&2
echo "frameworks: wrote $out/README.md and $out/matrix.html" >&2
