"""Loading candidates, and every way loading can fail (one line, naming it)."""

from __future__ import annotations

import importlib.metadata
import json
import sys

import pytest

from conformance import Candidate, CandidateError, CandidateInfo, load_candidate, registered_candidates
from conformance import cli, loading

from .conftest import BUILTINS

EX = "tests.harness.example_candidates"


def test_builtins_are_registered_by_entry_point():
    regs = {r.name: r for r in registered_candidates()}
    for name in BUILTINS:
        assert regs[name].error is None, regs[name].error
        assert regs[name].candidate.name == name
        assert regs[name].target.startswith("conformance.builtins:")


@pytest.mark.parametrize("spec, name", [
    ("torch-eager", "torch-eager"),
    (f"{EX}:torch_candidate", "example-torch"),
    (f"{EX}:make_torch_candidate", "example-torch-factory"),
])
def test_load_by_name_and_module_attr(spec, name):
    assert load_candidate(spec).name == name


def test_load_in_process_object_and_factory():
    from tests.harness import example_candidates as ex

    assert load_candidate(ex.torch_candidate) is ex.torch_candidate
    assert load_candidate(ex.make_torch_candidate).name == "example-torch-factory"


def test_load_from_environment(monkeypatch):
    monkeypatch.setenv(loading.ENV_VAR, f"{EX}:jax_candidate")
    assert load_candidate().name == "example-jax"
    monkeypatch.delenv(loading.ENV_VAR)
    with pytest.raises(CandidateError, match="SAPO_CANDIDATE"):
        load_candidate()


@pytest.mark.parametrize("spec, message", [
    ("no-such-candidate", "unknown candidate 'no-such-candidate'; registered: areal, jax, liger-chunked"),
    ("no_such_module:thing", "cannot import 'no_such_module': ModuleNotFoundError"),
    (f"{EX}:missing", f"'{EX}' has no attribute 'missing'"),
    (f"{EX}:broken_factory", "its factory raised RuntimeError: cannot build this candidate"),
    (f"{EX}:not_a_candidate_factory", "its factory returned int, not a Candidate"),
    (f"{EX}:NOT_A_CANDIDATE", "expected a Candidate or a factory returning one, got int"),
    ("module:", "expected 'module:attribute'"),
])
def test_loading_errors_are_one_line_and_name_the_candidate(spec, message):
    with pytest.raises(CandidateError) as info:
        load_candidate(spec)
    text = str(info.value)
    assert message in text and "\n" not in text
    assert text.startswith("candidate ") or text.startswith("unknown candidate")


class _EP:
    def __init__(self, name, value):
        self.name, self.value = name, value


def test_broken_entry_points_do_not_hide_the_others(monkeypatch, capsys):
    eps = [_EP("torch-eager", "conformance.builtins:torch_eager"),
           _EP("broken", f"{EX}:broken_factory"),
           _EP("missing-module", "nowhere_at_all:thing"),
           _EP("misnamed", f"{EX}:torch_candidate"),
           _EP("torch-eager", "somewhere:else")]
    monkeypatch.setattr(loading, "_entry_points", lambda: sorted(eps, key=lambda e: e.name))
    regs = {(r.name, r.target): r for r in registered_candidates()}
    assert regs[("torch-eager", "conformance.builtins:torch_eager")].candidate is not None
    assert "factory raised RuntimeError" in regs[("broken", f"{EX}:broken_factory")].error
    assert "cannot import 'nowhere_at_all'" in regs[("missing-module", "nowhere_at_all:thing")].error
    assert "produced a candidate named 'example-torch'" in regs[("misnamed", f"{EX}:torch_candidate")].error
    assert "registered twice" in regs[("torch-eager", "somewhere:else")].error
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "broken" in out and "no: candidate 'broken': its factory raised RuntimeError" in out
    assert "yes (cpu)" in out


def test_list_loads_each_candidate_in_a_worker(monkeypatch, capsys):
    """A candidate module that kills its process on import is one row of
    ``list``; the harness process never imports it."""
    eps = [_EP("crashes", "tests.harness.import_crash:candidate"), _EP("numpy-fp32", "conformance.builtins:numpy_fp32")]
    monkeypatch.setattr(loading, "_entry_points", lambda: eps)
    assert cli.main(["list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert not rows["crashes"]["runs_here"]
    assert rows["crashes"]["reason"] == "candidate 'crashes': its process exited with status 3 while loading"
    assert rows["numpy-fp32"]["runs_here"] and rows["numpy-fp32"]["here"] == ["cpu"]
    assert "tests.harness.import_crash" not in sys.modules


def test_list_shows_every_builtin_runnable_here(capsys):
    assert cli.main(["list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    for name in BUILTINS:
        assert rows[name]["runs_here"], rows[name]["reason"]
        assert "cpu" in rows[name]["here"]
        assert rows[name]["version"] not in ("", "not installed")


def test_availability_reasons():
    info = CandidateInfo(name="needs-missing", framework="torch")
    cand = Candidate(info, lambda *a, **k: 0.0, requires=("a_module_that_is_not_installed",))
    assert cand.availability().reason == "a_module_that_is_not_installed not installed"
    cuda_only = Candidate(CandidateInfo(name="cuda-only", framework="torch", devices=("cuda",)),
                          lambda *a, **k: 0.0)
    import torch

    if not torch.cuda.is_available():
        assert cuda_only.availability().reason == "no CUDA device"
    checked = Candidate(CandidateInfo(name="checked", framework="numpy", provides_grad=False),
                        lambda *a, **k: 0.0, device_check=lambda dev: "no compiler")
    assert not checked.availability() and checked.availability().reason == "no compiler"


@pytest.mark.parametrize("kwargs, message", [
    (dict(framework="tensorflow"), "invalid framework 'tensorflow'"),
    (dict(framework="torch", dtypes=("float8",)), "invalid dtypes 'float8'"),
    (dict(framework="torch", dtypes="float32"), "invalid dtypes 'float32'"),
    (dict(framework="torch", devices=("tpu",)), "invalid devices 'tpu'"),
    (dict(framework="torch", loss_agg_modes=("mean",)), "invalid loss_agg_modes 'mean'"),
    (dict(framework="torch", profile="mine"), "invalid profile 'mine'"),
    (dict(framework="torch", metrics=("loss",)), "invalid metrics 'loss'"),
    (dict(framework="torch", dtypes=()), "dtypes must not be empty"),
])
def test_candidate_info_validation(kwargs, message):
    with pytest.raises(CandidateError, match=message):
        CandidateInfo(name="bad", **kwargs)


def test_candidate_validation():
    info = CandidateInfo(name="x", framework="numpy")
    with pytest.raises(CandidateError, match="kernel is not callable"):
        Candidate(info, 3)
    with pytest.raises(CandidateError, match="numpy has no autograd"):
        Candidate(info, lambda *a, **k: 0)
    with pytest.raises(CandidateError, match="invalid grad_mode"):
        Candidate(info, lambda *a, **k: 0, grad_mode="finite-differences")


def test_entry_point_group_is_public():
    assert loading.ENTRY_POINT_GROUP == "sapo_conformance.candidates"
    names = {ep.name for ep in importlib.metadata.entry_points(group=loading.ENTRY_POINT_GROUP)}
    assert set(BUILTINS) <= names
