"""Declared deviations: findings a candidate's authors accept, with reasons.

Like array-api-tests' xfails file.  An entry names a defect of the
catalogue or a glob over record ids, and says why::

    [tool.sapo-conformance]          # in the candidate project's pyproject.toml
    accept = [
      { defect = "naive-one-minus-sigmoid", reason = "float32 sigmoid backward; invisible to training" },
      { check = "edge.all-masked:*", reason = "the trainer never sends an all-masked batch" },
    ]

``run --accept FILE`` reads the same table from FILE, or a top-level
``accept = [...]`` array.  An optional ``category`` restricts an entry to
findings of that category.  README "Declared deviations" documents it.
"""

from __future__ import annotations

import difflib
import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .tolerance import CATEGORIES

TABLE = "sapo-conformance"
_KEYS = {"defect", "check", "category", "reason"}


class AcceptError(ValueError):
    """A malformed accept file or entry: the message names the file and entry."""


@dataclass(frozen=True)
class Entry:
    reason: str
    defect: str | None = None
    check: str | None = None
    category: str | None = None
    source: str = ""

    @property
    def match(self) -> str:
        """How the entry reads in a report: "defect X", "check G"."""
        what = f"defect {self.defect}" if self.defect else f"check {self.check}"
        return what + (f" ({self.category})" if self.category else "")

    def covers(self, record: dict) -> bool:
        """Does this entry accept a failing record (report.json form)?"""
        if self.category is not None and record.get("category") != self.category:
            return False
        if self.defect is not None:
            return self.defect in (record.get("defects") or [])
        return fnmatch.fnmatchcase(record["id"], self.check) or fnmatch.fnmatchcase(record["check"], self.check)


def parse(entries, source: str) -> list[Entry]:
    """Entries from a list of tables; AcceptError naming ``source`` and the
    entry when one is malformed."""
    from .defects import DEFECTS_BY_ID

    if not isinstance(entries, list):
        raise AcceptError(f"{source}: 'accept' must be a list of tables, got {type(entries).__name__}")
    out = []
    for i, e in enumerate(entries):
        where = f"{source}: accept entry {i + 1}"
        if not isinstance(e, dict):
            raise AcceptError(f"{where} must be a table like {{ defect = \"id\", reason = \"why\" }}")
        unknown = sorted(set(e) - _KEYS)
        if unknown:
            raise AcceptError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_KEYS))})")
        reason = e.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise AcceptError(f"{where}: 'reason' is required: say why this deviation is acceptable")
        if ("defect" in e) == ("check" in e):
            raise AcceptError(f"{where}: give exactly one of 'defect' (a catalogue id) or 'check' (a glob over "
                              f"record ids)")
        defect, check, category = e.get("defect"), e.get("check"), e.get("category")
        if defect is not None:
            if not isinstance(defect, str) or defect not in DEFECTS_BY_ID:
                close = difflib.get_close_matches(str(defect), list(DEFECTS_BY_ID), n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else " (`sapo-conformance defects` lists them)"
                raise AcceptError(f"{where}: unknown defect {defect!r}{hint}")
        if check is not None and (not isinstance(check, str) or not check):
            raise AcceptError(f"{where}: 'check' must be a non-empty glob such as \"edge.all-masked:*\"")
        if category is not None and category not in CATEGORIES:
            raise AcceptError(f"{where}: unknown category {category!r} (one of {', '.join(CATEGORIES)})")
        out.append(Entry(reason.strip(), defect, check, category, source))
    return out


def load(path) -> list[Entry]:
    """The entries of an accept file: ``[tool.sapo-conformance] accept`` or
    a top-level ``accept`` array."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AcceptError(f"--accept {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AcceptError(f"--accept {path}: cannot read it ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise AcceptError(f"--accept {path}: not valid TOML ({exc})") from None
    table = data.get("tool", {}).get(TABLE)
    if table is not None:
        if not isinstance(table, dict) or "accept" not in table:
            raise AcceptError(f"{path}: [tool.{TABLE}] has no 'accept' list")
        return parse(table["accept"], str(path))
    if "accept" not in data:
        raise AcceptError(f"{path}: neither [tool.{TABLE}] accept = [...] nor a top-level accept = [...]")
    return parse(data["accept"], str(path))


def discover(start) -> Path | None:
    """The nearest pyproject.toml at or above ``start`` with a
    ``[tool.sapo-conformance]`` table, or None."""
    for directory in (Path(start).resolve(), *Path(start).resolve().parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            try:
                data = tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                return None
            return candidate if TABLE in data.get("tool", {}) else None
    return None
