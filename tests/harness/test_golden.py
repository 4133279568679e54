"""Golden fixtures: verify, deterministic and atomic regen, replay, and every
kind of bad fixture set (a clear error naming the file, nothing overwritten)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conformance import cli, golden, load_candidate
from conformance.suite import plan, run_units

from .conftest import available_or_skip


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("golden") / "set"
    golden.regenerate(d)
    return d


def snapshot(d: Path) -> dict:
    """File name -> sha256 prefix: compared, and shown when they differ,
    without ever printing the bytes."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in sorted(d.iterdir())}


def _first_differences(a: np.ndarray, b: np.ndarray, limit: int) -> str:
    if a.shape != b.shape or a.dtype != b.dtype:
        return f"{a.dtype}{a.shape} vs {b.dtype}{b.shape}"
    av, bv = a.reshape(-1), b.reshape(-1)
    same = (av == bv) | (np.isnan(av) & np.isnan(bv)) if av.dtype.kind == "f" else av == bv
    idx = np.flatnonzero(~same)
    shown = []
    for i in idx[:limit]:
        x, y = av[i], bv[i]
        if av.dtype.kind == "f" and np.isfinite(x) and np.isfinite(y):
            u = abs(float(x) - float(y)) / float(np.spacing(max(abs(float(y)), 5e-324)))
            shown.append(f"[{i}] {x!r} vs {y!r} ({u:.3g} ulp)")
        else:
            shown.append(f"[{i}] {x!r} vs {y!r}")
    return f"{idx.size} of {av.size} values differ: " + "; ".join(shown)


def differences(a: Path, b: Path, limit: int = 5) -> list[str]:
    """What differs between two fixture directories, bounded: the files, and
    inside each differing .npz the first ``limit`` arrays with their first
    ``limit`` differing values and ulp distances."""
    sa, sb = snapshot(a), snapshot(b)
    out = [f"only in {a.name if n in sa else b.name}: {n}" for n in sorted(set(sa) ^ set(sb))]
    for name in sorted(n for n in set(sa) & set(sb) if sa[n] != sb[n]):
        if not name.endswith(".npz"):
            out.append(f"{name} differs")
            continue
        with np.load(a / name, allow_pickle=False) as za, np.load(b / name, allow_pickle=False) as zb:
            keys = sorted(set(za.files) | set(zb.files))
            diff = [k for k in keys if k not in za.files or k not in zb.files or za[k].tobytes() != zb[k].tobytes()
                    or za[k].shape != zb[k].shape]
            out.append(f"{name}: {len(diff)} of {len(keys)} arrays differ")
            for k in diff[:limit]:
                detail = _first_differences(za[k], zb[k], limit) if k in za.files and k in zb.files else "missing"
                out.append(f"  {k}: {detail}")
    return out


def assert_same_set(a: Path, b: Path) -> None:
    problems = differences(a, b)
    assert not problems, "fixture sets differ:\n" + "\n".join(problems)


def copy_set(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_the_checked_in_set_verifies_against_the_current_oracle():
    manifest, changes, n = golden.verify(golden.default_dir())
    assert changes == [] and n == len(manifest["cases"]) > 300
    sizes = sum(p.stat().st_size for p in golden.default_dir().iterdir())
    assert sizes < 6e6  # a few MB
    covered = {c["title"] for c in manifest["cases"].values()}
    from conformance.cases import CASES

    assert {c.title for c in CASES} <= covered


def test_the_checked_in_set_is_what_regen_produces(fresh):
    """Byte for byte, on any machine and NumPy version: the inputs come from
    PortableRandom and the outputs from the oracle's reproducible path."""
    assert_same_set(fresh, golden.default_dir())


def test_regen_is_deterministic(fresh, tmp_path):
    golden.regenerate(tmp_path / "again")
    assert_same_set(tmp_path / "again", fresh)


def test_a_differing_set_is_described_briefly(fresh, tmp_path):
    """The failure message names files, arrays and values with their ulp
    distance, and stays short however much differs."""
    d = copy_set(fresh, tmp_path / "set")
    case = "random.canonical.token-mean.0.float64"

    def mutate(arrays):
        for k in list(arrays):
            if k.startswith("random.") and arrays[k].dtype == np.float64 and arrays[k].size:
                arrays[k] = np.nextafter(arrays[k], np.inf)

    _rewrite(d / "random-canonical.npz", mutate)
    problems = differences(d, fresh)
    text = "\n".join(problems)
    assert "manifest.json differs" in problems and "random-canonical.npz" in text
    assert f"{case}__grad" in text or "__grad" in text
    assert "1 ulp" in text and len(text) < 4000 and len(problems) <= 2 + 5 + 2


@pytest.mark.parametrize("fail_at", ["write", "swap"])
def test_an_interrupted_regen_leaves_the_previous_set_intact(fresh, tmp_path, monkeypatch, fail_at):
    target = copy_set(fresh, tmp_path / "set")
    before = snapshot(target)
    if fail_at == "write":
        real = Path.write_bytes
        calls = []

        def flaky(self, data):
            calls.append(self)
            if len(calls) == 2:
                raise KeyboardInterrupt("killed")
            return real(self, data)

        monkeypatch.setattr(Path, "write_bytes", flaky)
    else:
        real_replace = os.replace

        def flaky_replace(src, dst):
            if Path(dst) == target and not Path(src).name.startswith(".set.old"):
                raise KeyboardInterrupt("killed")
            return real_replace(src, dst)

        monkeypatch.setattr(os, "replace", flaky_replace)
    with pytest.raises(KeyboardInterrupt):
        golden.regenerate(target)
    monkeypatch.undo()
    if not target.exists():  # killed between the two renames: the old set is beside it
        olds = list(tmp_path.glob(".set.old-*"))
        assert len(olds) == 1 and snapshot(olds[0]) == before
    else:
        assert snapshot(target) == before
    assert not list(tmp_path.glob(".set.new-*"))


def _rewrite(path: Path, mutate) -> None:
    """Rewrite one .npz (via mutate(dict of arrays)) and fix its sha256."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    mutate(arrays)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, v in arrays.items():
            data = io.BytesIO()
            np.lib.format.write_array(data, v, allow_pickle=True)
            zf.writestr(f"{k}.npy", data.getvalue())
    path.write_bytes(buf.getvalue())
    manifest_path = path.parent / "manifest.json"
    m = json.loads(manifest_path.read_text())
    m["files"][path.name]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(m))


def _truncate(d):
    p = d / "random-trl.npz"
    p.write_bytes(p.read_bytes()[:1000])


def _corrupt(d):
    p = d / "edge.npz"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))


def _pickled(d):
    def mutate(arrays):
        arrays["sneaky"] = np.array([{"x": 1}], dtype=object)

    _rewrite(d / "random-paper.npz", mutate)


def _wrong_shape(d):
    def mutate(arrays):
        for k in [k for k in arrays if k.endswith("__grad")][:1]:
            arrays[k] = arrays[k][:, :1]

    _rewrite(d / "random-paper.npz", mutate)


BAD = {
    "wrong-shape": (_wrong_shape, "random-paper.npz: case"),
    "truncated": (_truncate, "random-trl.npz: sha256"),
    "corrupted": (_corrupt, "edge.npz: sha256"),
    "missing": (lambda d: (d / "random-verl.npz").unlink(), "random-verl.npz: listed in the manifest but missing"),
    "extra": (lambda d: (d / "stray.npz").write_bytes(b"PK"), "stray.npz: not in the manifest"),
    "pickle": (_pickled, "random-paper.npz: contains an object array (pickle)"),
    "manifest": (lambda d: (d / "manifest.json").write_text("{oops"), "manifest.json: unreadable"),
    "no-manifest": (lambda d: (d / "manifest.json").unlink(), "manifest.json: missing"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_fixtures_are_a_clear_error_naming_the_file(fresh, tmp_path, kind, capsys):
    d = copy_set(fresh, tmp_path / "set")
    damage, message = BAD[kind]
    damage(d)
    before = snapshot(d)
    with pytest.raises(golden.GoldenError, match=message.replace("(", r"\(").replace(")", r"\)")):
        golden.verify(d)
    assert cli.main(["golden", "verify", "--dir", str(d)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert message.split(":")[0] in err and err.count("\n") == 1
    assert snapshot(d) == before  # nothing overwritten


def test_a_changed_value_is_named_with_its_size(fresh, tmp_path, capsys):
    d = copy_set(fresh, tmp_path / "set")
    case = "random.canonical.token-mean.0.float64"

    def mutate(arrays):
        arrays[f"{case}__loss"] = arrays[f"{case}__loss"] * (1 + 1e-12)

    _rewrite(d / "random-canonical.npz", mutate)
    _, changes, _ = golden.verify(d)
    assert {(c.case, c.output) for c in changes} == {(case, "loss")}
    assert {c.path for c in changes} == {"reproducible", "fast"} and all(c.error > c.allowed for c in changes)
    assert cli.main(["golden", "verify", "--dir", str(d)]) == cli.EXIT_NONCONFORMANT
    assert f"changed: {case} loss" in capsys.readouterr().out


def test_the_format_reads_without_numpy_load(fresh):
    """The documented format: a zip of .npy files named CASE__ARRAY."""
    m = json.loads((fresh / "manifest.json").read_text())
    cid, meta = next(iter(sorted(m["cases"].items())))
    with zipfile.ZipFile(fresh / meta["file"]) as zf:
        names = set(zf.namelist())
        for part in golden.INPUTS + golden.OUTPUTS:
            assert f"{cid}__{part}.npy" in names
        grad = np.lib.format.read_array(io.BytesIO(zf.read(f"{cid}__grad.npy")), allow_pickle=False)
    assert grad.dtype == np.float64 and grad.ndim == 2


@pytest.mark.parametrize("name", ["numpy-fp32", "torch-eager", "jax", "triton"])
def test_every_builtin_replays_the_golden_set(name):
    cand = available_or_skip(load_candidate(name))
    recs = run_units(cand, plan(cand, checks=["golden.*"]), profile="quick")
    assert recs and all(r.status == "pass" for r in recs), [(r.id, r.message) for r in recs if r.status != "pass"]
    assert sum(r.examples for r in recs if r.check == "golden.replay:loss") > 50


@pytest.mark.parametrize("mutant", ["no-4-over-tau", "detached-gate", "inverted-ratio", "grad-missing-r",
                                    "token-mean-for-seq", "nan-through-mask", "exp-overflow-nan"])
def test_replay_rejects_mutants_that_change_values(mutant):
    from tests.mutants import MUTANTS

    cand = next(m for m in MUTANTS if m.name == mutant).candidate
    recs = run_units(cand, plan(cand, checks=["golden.*"]), profile="quick")
    assert any(r.status in ("fail", "error") for r in recs)


def test_run_golden_only(tmp_path, capsys):
    assert cli.main(["run", "numpy-fp32", "--golden-only", "--quiet", "--report-dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert {r["group"] for r in report["checks"]} == {"golden"}
    assert cli.main(["run", "numpy-fp32", "--golden-only", "--check", "x", "--report-dir", str(tmp_path)]) == 2


def test_missing_fixtures_skip_the_replay(tmp_path, monkeypatch):
    from conformance.suite import golden_replay

    monkeypatch.setenv(golden.ENV_VAR, str(tmp_path / "nowhere"))
    golden_replay._CACHE.clear()
    cand = load_candidate("numpy-fp32")
    recs = run_units(cand, plan(cand, checks=["golden.*"], dtypes=["float32"], modes=["token-mean"]))
    assert [r.status for r in recs] == ["skip"] and "no golden fixture directory" in recs[0].message
    golden_replay._CACHE.clear()
