"""The oracle's packaging promises."""

from __future__ import annotations

import doctest
import subprocess
import sys

import sapo_ref


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
