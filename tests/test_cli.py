"""The sapo-conformance command line (what exists so far)."""

from __future__ import annotations

import subprocess
import sys


from conformance import cli


def test_selfcheck_passes(capsys):
    assert cli.main(["selfcheck"]) == 0
    out = capsys.readouterr().out
    assert "6/6 checks passed" in out


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert "oracle" in capsys.readouterr().out


def test_no_command_is_a_usage_error(capsys):
    assert cli.main([]) == cli.EXIT_USAGE


def test_python_dash_m_sapo_ref():
    out = subprocess.run([sys.executable, "-m", "sapo_ref"], capture_output=True, text=True)
    assert out.returncode == 0 and "checks passed" in out.stdout
