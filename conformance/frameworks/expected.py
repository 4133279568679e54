"""Expected results of the frameworks matrix, the array-api-tests xfails
model: ``frameworks/expected/<name>.toml`` lists, with a reason each, the
findings a framework is known to have, in the accept-file format
(``conformance.accept``: a defect id or a check glob, optionally a
category).  ``scripts/frameworks.sh`` compares every run with its file, and
any change fails the command:

* a failing check no entry covers: a new defect (or a harness change that
  found one), to confirm and then list, or fix;
* an entry that covers no failing check: the framework fixed it (or the
  check no longer runs), to remove.

An entry may also say ``profiles = ["default"]``: it is expected only in
runs of those profiles (a finding only the default profile's longer random
search reaches; CI runs ``quick``).  Without it, an entry holds for every
profile.

``python -m conformance.frameworks.expected EXPECTED.toml REPORT.json``
prints one line per difference and exits 1 if there is any.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from ..accept import AcceptError, Entry, parse
from ..profiles import SUITE_PROFILES
from ..report import ReportError, load_report


def load(path, profile: str) -> list[Entry]:
    """The entries of an expected file that hold for a run of ``profile``."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AcceptError(f"{path}: cannot read it ({exc})") from None
    entries = data.get("accept")
    if not isinstance(entries, list):
        raise AcceptError(f"{path}: no top-level accept = [...] list")
    kept = []
    for i, e in enumerate(entries):
        profiles = e.pop("profiles", None) if isinstance(e, dict) else None
        if profiles is not None and (not isinstance(profiles, list) or not set(profiles) <= set(SUITE_PROFILES)):
            raise AcceptError(f"{path}: accept entry {i + 1}: 'profiles' must be a list of "
                              f"{', '.join(SUITE_PROFILES)}, got {profiles!r}")
        if profiles is None or profile in profiles:
            kept.append(e)
    return parse(kept, str(path))

FAILING = ("fail", "error")


def differences(report: dict, entries: list[Entry]) -> list[str]:
    """What differs between a report and the expected findings: one line
    each, "new: ..." or "fixed: ...", empty when they agree."""
    failing = [r for r in report["checks"] if r["status"] in FAILING]
    lines = []
    new: dict[tuple, list[str]] = {}
    for rec in failing:
        if not any(e.covers(rec) for e in entries):
            key = (rec.get("category") or "contract", tuple(rec.get("defects") or ()))
            new.setdefault(key, []).append(rec["id"])
    for (category, defects), ids in sorted(new.items()):
        what = ", ".join(defects) or "not a known defect"
        more = f" and {len(ids) - 3} more" if len(ids) > 3 else ""
        lines.append(f"new: {category} finding {what} in {len(ids)} check runs ({', '.join(ids[:3])}{more}): "
                     f"confirm it and add it to the expected file with a reason, or fix it")
    for e in entries:
        if not any(e.covers(rec) for rec in failing):
            lines.append(f"fixed: {e.match} ({e.reason}) no longer fails: remove it from the expected file")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m conformance.frameworks.expected EXPECTED.toml REPORT.json", file=sys.stderr)
        return 2
    try:
        report = load_report(Path(argv[1]))
        entries = load(argv[0], report["run"]["profile"])
    except (AcceptError, ReportError) as exc:
        print(f"expected results: {exc}", file=sys.stderr)
        return 2
    lines = differences(report, entries)
    for line in lines:
        print(line)
    return 1 if lines else 0


if __name__ == "__main__":  # pragma: no cover - scripts/frameworks.sh
    sys.exit(main(sys.argv[1:]))
