"""The oracle's packaging promises."""

from __future__ import annotations

import doctest
import json
import re
import subprocess
import sys
from pathlib import Path

import sapo_ref


_ISOLATED = """
import sys
allowed = set(sys.stdlib_module_names) | {"numpy", "sapo_ref"}

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in allowed:
            raise ImportError(f"sapo_ref must not import {name}")
        return None

sys.meta_path.insert(0, Block())
import sapo_ref
from sapo_ref._selfcheck import run_selfcheck
assert all(c.passed for c in run_selfcheck())
res = sapo_ref.sapo_loss([[0.5, -800.0]], [[0.0, 0.0]], [1.0], [[1, 1]])
print("ok", res.loss)
"""


def test_oracle_runs_with_nothing_but_numpy_importable():
    """Every import outside the standard library and numpy is blocked; the
    oracle still imports, self-checks and evaluates a precise-path token."""
    out = subprocess.run([sys.executable, "-c", _ISOLATED], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def test_oracle_imports_with_numpy_alone():
    code = (
        "import sys, sapo_ref; "
        "heavy = {'torch', 'jax', 'triton', 'mpmath', 'scipy', 'hypothesis', 'conformance'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_api():
    for name in sapo_ref.__all__:
        assert hasattr(sapo_ref, name)
    assert sapo_ref.LOSS_AGG_MODES == (
        "token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm",
    )
    assert isinstance(sapo_ref.__version__, str) and isinstance(sapo_ref.ORACLE_VERSION, str)


def test_docstring_examples():
    result = doctest.testmod(sapo_ref, verbose=False)
    assert result.attempted > 0 and result.failed == 0


ROOT = Path(__file__).resolve().parents[2]


def test_readme_states_the_golden_sets_size():
    """README's "`golden/` holds N frozen cases (X MB)" follows the set:
    N is the number of cases in golden/manifest.json, X the size of the
    files to within 10% (du -sh and a sum of bytes differ by a few percent)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    stated = re.search(r"`golden/`\s+holds\s+([\d ,]+?)\s+frozen\s+cases\s+\(([\d.]+)\s+MB\)", readme)
    assert stated, "README no longer states the golden set's size as `golden/` holds N frozen cases (X MB)"
    manifest = json.loads((ROOT / "golden" / "manifest.json").read_text(encoding="utf-8"))
    assert int(re.sub(r"[ ,]", "", stated.group(1))) == len(manifest["cases"])
    size = sum(p.stat().st_size for p in (ROOT / "golden").iterdir() if p.is_file())
    assert abs(float(stated.group(2)) * 1e6 - size) <= 0.1 * size, f"golden/ is {size / 1e6:.2f} MB"
