"""Golden fixtures: oracle inputs and outputs frozen in files.

They let a kernel be checked without the oracle or hypothesis (fast CI jobs,
implementations in other languages), and pin the oracle itself against
silent change.  The format (README, "Golden fixtures"):

* ``golden/manifest.json`` -- schema ``sapo-conformance.golden`` version 2:
  the oracle version and the generator seed that made the set (version 1
  also recorded the NumPy version: its outputs depended on it);
  ``files``: file name -> {"sha256", "cases": [ids]}; ``cases``: id ->
  {"file", "title", "covers", "dtype", "options", "semantics"}.
* ``golden/*.npz`` -- uncompressed zip archives of ``.npy`` arrays (NumPy's
  format, readable without Python, e.g. by cnpy or npyz), written
  byte-for-byte deterministically.  Case ``ID`` has the arrays
  ``ID__logprob``, ``ID__old_logprob``, ``ID__advantages`` (inputs, float64
  holding values exactly representable in the case's dtype), ``ID__mask``
  (bool) and the float64 oracle outputs ``ID__loss`` (0-d), ``ID__grad``,
  ``ID__token_loss``, ``ID__gate``, ``ID__ratio``, ``ID__agg_weight`` and
  ``ID__metrics`` (ppo_kl, avg_ratio, avg_soft_gate, pos_adv_frac).

Because the inputs are exact in the case's dtype, a candidate of that dtype
sees them unrounded and the stored outputs are its exact reference.

Every byte is the same on every machine: the inputs come from
:class:`~conformance.portable_random.PortableRandom`, the outputs from the
oracle's reproducible path (``sapo_loss(..., reproducible=True)``: IEEE
basic operations only, no libm), and the files are written by this module
(``.npy`` headers, zip entries and timestamps fixed), not by NumPy's writer.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

import sapo_ref
from sapo_ref import LOSS_AGG_MODES, METRIC_NAMES, PROFILES
from sapo_ref._version import ORACLE_VERSION

from sapo_ref._dtypes import round_to  # the oracle rounds tau so too

from .candidate import DTYPES, INPUT_NAMES, Batch, CallOptions
from .cases import CASES
from .portable_random import PortableRandom

SCHEMA = "sapo-conformance.golden"
SCHEMA_VERSION = 2
#: manifest versions this module reads
READABLE_VERSIONS = (1, 2)
#: the arrays of a case file: the inputs, then the stored outputs
INPUTS = INPUT_NAMES
OUTPUTS = ("loss", "grad", "token_loss", "gate", "ratio", "agg_weight", "metrics")
DEFAULT_SEED = 20251120
#: how far the fast path may be from the stored outputs: ulp per token ...
ULP_TOLERANCE = 2.0
#: ... and, for the loss and metrics, units of eps * sum|terms| + 1 ulp
SUM_TOLERANCE = 4.0
LONG_ROW = 2048  # the golden long row (the suites use 32768)
ENV_VAR = "SAPO_GOLDEN_DIR"


class GoldenError(ValueError):
    """A fixture set that cannot be used; the message names the file."""


def default_dir() -> Path:
    """$SAPO_GOLDEN_DIR, else golden/ beside the package (a source checkout)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "golden"


# ---------------------------------------------------------------------------
# rounding inputs to a dtype, exactly
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# the cases
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GoldenCase:
    id: str
    file: str
    title: str
    covers: tuple[str, ...]
    dtype: str
    options: dict  # CallOptions fields + "profile"
    batch: Batch


def _edge_cases(seed: int):
    for case in CASES:
        batch = case.make()
        if case.long:  # keep the set small: a shorter long row
            batch = Batch(batch.logprob[:, :LONG_ROW], batch.old_logprob[:, :LONG_ROW], batch.advantages,
                          batch.mask[:, :LONG_ROW])
        for dtype in DTYPES:
            if case.long and dtype != "float32":
                continue
            rounded = Batch(round_to(batch.logprob, dtype), round_to(batch.old_logprob, dtype),
                            round_to(batch.advantages, dtype), np.asarray(batch.mask, bool))
            for mode in LOSS_AGG_MODES:
                yield GoldenCase(
                    id=f"edge.{case.id}.{dtype}.{mode}", file="edge.npz", title=case.title,
                    covers=(f"SPEC edge case: {case.title}", f"loss_agg_mode {mode}"), dtype=dtype,
                    options=dict(tau_pos=case.tau_pos, tau_neg=case.tau_neg, loss_agg_mode=mode, profile="canonical"),
                    batch=rounded)


def _random_cases(seed: int):
    rng = PortableRandom(seed)
    taus = ((1.0, 1.05), (0.5, 4.0), (4.0, 0.5), (0.1, 20.0))
    for profile in PROFILES:
        for mode in LOSS_AGG_MODES:
            for k in range(3):
                B, T = int(rng.integers(2, 7)), int(rng.integers(3, 33))
                olp = -rng.exponential(1.5, (B, T))
                lp = olp + rng.normal(0, (0.05, 0.3, 1.5)[k], (B, T))
                lp[0, 0] = olp[0, 0] + (30.0, -30.0, 12.0)[k]  # one tail token: the verl clamp, fp16 overflow
                mask = np.arange(T)[None, :] < rng.integers(0, T + 1, B)[:, None]
                mask[0, 0] = True
                adv = rng.normal(0, 1, B)
                adv[-1] = 0.0
                tp, tn = taus[(k + len(mode)) % len(taus)]
                if PROFILES[profile].name == "trinity" and tp > tn:
                    tp, tn = tn, tp
                for dtype in ("float64", "float32", "bfloat16"):  # bfloat16: what trainers feed
                    yield GoldenCase(
                        id=f"random.{profile}.{mode}.{k}.{dtype}", file=f"random-{profile}.npz",
                        title=f"random batch under the {profile} profile",
                        covers=(f"profile {profile}", f"loss_agg_mode {mode}"), dtype=dtype,
                        options=dict(tau_pos=tp, tau_neg=tn, loss_agg_mode=mode, profile=profile),
                        batch=Batch(round_to(lp, dtype), round_to(olp, dtype), round_to(adv, dtype), mask))


def generate(seed: int = DEFAULT_SEED) -> list[GoldenCase]:
    return list(_edge_cases(seed)) + list(_random_cases(seed))


def _oracle(case_batch: Batch, options: dict, dtype: str, *, reproducible: bool = True) -> sapo_ref.SAPOResult:
    kw = dict(options)
    profile = kw.pop("profile")
    if sapo_ref.get_profile(profile).tau_dtype == "advantages":
        kw["tau_dtype"] = dtype
    return sapo_ref.sapo_loss(case_batch.logprob, case_batch.old_logprob, case_batch.advantages, case_batch.mask,
                              profile=profile, reproducible=reproducible, **kw)


def _outputs(res: sapo_ref.SAPOResult) -> dict:
    return {
        "loss": np.array(res.loss), "grad": res.grad, "token_loss": res.token_loss, "gate": res.gate,
        "ratio": res.ratio, "agg_weight": res.agg_weight,
        "metrics": np.array([res.metrics[m] for m in METRIC_NAMES]),
    }


# ---------------------------------------------------------------------------
# writing (deterministic, atomic)
# ---------------------------------------------------------------------------


_NPY_DESCR = {np.dtype(np.float64): "<f8", np.dtype(bool): "|b1"}


def _npy_bytes(arr: np.ndarray) -> bytes:
    """``arr`` in the .npy format, version 1.0, written here rather than by
    NumPy (whose header layout could change between versions): the header
    dict padded with spaces to a multiple of 64 bytes, then the data in C
    order, little-endian."""
    arr = np.asarray(arr)
    descr = _NPY_DESCR[arr.dtype]
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple(int(n) for n in arr.shape)!r}, }}"
    pad = -(10 + len(header) + 1) % 64
    head = (header + " " * pad + "\n").encode("latin1")
    data = np.ascontiguousarray(arr, dtype=descr).tobytes() if arr.ndim else np.asarray(arr, dtype=descr).tobytes()
    return b"\x93NUMPY\x01\x00" + len(head).to_bytes(2, "little") + head + data


def _npz_bytes(arrays: dict) -> bytes:
    """An uncompressed .npz with fixed timestamps and attributes: identical
    bytes for identical arrays, on any machine."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system = 3  # Unix, wherever it is written
            info.external_attr = 0o644 << 16
            zf.writestr(info, _npy_bytes(arrays[name]))
    return buf.getvalue()


def _semantics_dict(sem) -> dict:
    return {k: getattr(sem, k) for k in ("profile", "loss_agg_mode", "empty_rows", "token_count_eps",
                                          "row_count_eps", "token_sum_norm", "log_ratio_clamp", "tau_dtype",
                                          "tau_pos", "tau_neg")}


def build(seed: int = DEFAULT_SEED) -> tuple[dict, dict[str, bytes]]:
    """The manifest and the file contents of a fixture set."""
    files: dict[str, dict] = {}
    cases = {}
    for case in generate(seed):
        res = _oracle(case.batch, case.options, case.dtype)
        arrays = files.setdefault(case.file, {})
        b = case.batch
        for name, arr in zip(INPUTS, (b.logprob, b.old_logprob, b.advantages, np.asarray(b.mask, bool))):
            arrays[f"{case.id}__{name}"] = arr
        for name, arr in _outputs(res).items():
            arrays[f"{case.id}__{name}"] = np.asarray(arr, dtype=np.float64)
        cases[case.id] = {"file": case.file, "title": case.title, "covers": list(case.covers), "dtype": case.dtype,
                          "options": case.options, "semantics": _semantics_dict(res.semantics)}
    contents = {name: _npz_bytes(arrays) for name, arrays in sorted(files.items())}
    manifest = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "oracle_version": ORACLE_VERSION,
        "oracle_path": "reproducible",
        "generator_seed": seed,
        "metrics": list(METRIC_NAMES),
        "files": {name: {"sha256": hashlib.sha256(data).hexdigest(),
                         "cases": sorted(k for k, v in cases.items() if v["file"] == name)}
                  for name, data in contents.items()},
        "cases": cases,
    }
    return manifest, contents


def regenerate(out: Path, seed: int = DEFAULT_SEED) -> dict:
    """Write a fresh set to ``out``: into a temporary directory beside it,
    then swapped in, so an interrupted regen leaves the previous set intact."""
    out = Path(out)
    manifest, contents = build(seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        for name, data in contents.items():
            (tmp / name).write_bytes(data)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        for p in tmp.iterdir():
            p.chmod(0o644)
        tmp.chmod(0o755)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rmdir(old)
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


# ---------------------------------------------------------------------------
# reading and verifying
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedCase:
    id: str
    meta: dict
    batch: Batch
    outputs: dict  # name -> float64 array

    @property
    def options(self) -> CallOptions:
        o = {k: v for k, v in self.meta["options"].items() if k != "profile"}
        return CallOptions(**o)


def _read_manifest(directory: Path) -> dict:
    path = directory / "manifest.json"
    if not directory.is_dir():
        raise GoldenError(f"{directory}: no golden fixture directory (set {ENV_VAR} or pass --dir)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GoldenError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise GoldenError(f"{path}: unreadable ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise GoldenError(f"{path}: not a sapo-conformance golden manifest")
    if manifest.get("schema_version") not in READABLE_VERSIONS:
        raise GoldenError(f"{path}: unsupported schema version {manifest.get('schema_version')!r}")
    problem = _manifest_problem(manifest)
    if problem:
        raise GoldenError(f"{path}: malformed ({problem})")
    return manifest


def _manifest_problem(manifest: dict) -> str | None:
    """What is structurally wrong with a manifest, or None."""
    files, cases = manifest.get("files"), manifest.get("cases")
    if not isinstance(files, dict) or not isinstance(cases, dict):
        return "files and cases must be objects"
    for name, entry in files.items():
        if not (name.endswith(".npz") and name == Path(name).name and not name.startswith(".")):
            return f"file name {name!r} is not a plain .npz name"
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            return f"files[{name!r}] needs a sha256"
    for cid, meta in cases.items():
        if not isinstance(meta, dict) or not isinstance(meta.get("file"), str) or meta["file"] not in files:
            return f"case {cid!r} must name one of the files"
        options = meta.get("options")
        if not isinstance(options, dict) or not isinstance(meta.get("dtype"), str):
            return f"case {cid!r} needs options and a dtype"
        allowed = {f.name for f in fields(CallOptions)} | {"profile"}
        if not isinstance(options.get("profile"), str) or not set(options) <= allowed:
            return f"case {cid!r}: options must name a profile and only {', '.join(sorted(allowed))}"
    return None


def _check_files(directory: Path, manifest: dict) -> None:
    listed = set(manifest["files"])
    present = {p.name for p in directory.glob("*.npz")}
    if listed - present:
        raise GoldenError(f"{directory / sorted(listed - present)[0]}: listed in the manifest but missing")
    if present - listed:
        raise GoldenError(f"{directory / sorted(present - listed)[0]}: not in the manifest (an extra file)")
    for name, entry in manifest["files"].items():
        path = directory / name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if not isinstance(entry, dict) or digest != entry.get("sha256"):
            raise GoldenError(f"{path}: sha256 {digest[:16]}... does not match the manifest (corrupted or edited)")


def _open_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except ValueError as exc:
        if "pickle" in str(exc) or "object" in str(exc):
            raise GoldenError(f"{path}: contains an object array (pickle); fixtures hold plain arrays only") from None
        raise GoldenError(f"{path}: unreadable ({exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise GoldenError(f"{path}: not a valid .npz archive ({exc})") from None


def _shape_problem(inputs: list, outputs: dict) -> str | None:
    """What is inconsistent in a case's array shapes, or None."""
    lp = inputs[0]
    if lp.ndim != 2 or inputs[1].shape != lp.shape or inputs[3].shape != lp.shape:
        return "logprob, old_logprob and mask must share one (B, T) shape"
    expected = {"loss": (), "metrics": (len(METRIC_NAMES),)}
    for name in OUTPUTS:
        want = expected.get(name, lp.shape)
        if outputs[name].shape != want or outputs[name].dtype != np.float64:
            return f"output {name} is {outputs[name].dtype}{outputs[name].shape}, expected float64{want}"
    return None


def load(directory: Path | None = None) -> tuple[dict, list[LoadedCase]]:
    """Every case of a verified-intact fixture set (sha256 and file set)."""
    directory = Path(directory or default_dir())
    manifest = _read_manifest(directory)
    _check_files(directory, manifest)
    arrays = {name: _open_npz(directory / name) for name in manifest["files"]}
    out = []
    for cid, meta in sorted(manifest["cases"].items()):
        try:
            data = arrays[meta["file"]]
            inp = [data[f"{cid}__{n}"] for n in INPUTS]
            outputs = {n: data[f"{cid}__{n}"] for n in OUTPUTS}
        except (KeyError, TypeError) as exc:
            raise GoldenError(f"{directory / str(meta.get('file'))}: case {cid!r} incomplete (missing {exc})") from None
        if inp[3].dtype != bool or any(a.dtype != np.float64 for a in inp[:3]):
            raise GoldenError(f"{directory / meta['file']}: case {cid!r} has arrays of the wrong dtype")
        wrong = _shape_problem(inp, outputs)
        if wrong:
            raise GoldenError(f"{directory / meta['file']}: case {cid!r}: {wrong}")
        out.append(LoadedCase(cid, meta, Batch(*inp), outputs))
    return manifest, out


def _ulps(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference in ulps of b (NaN where exactly one is NaN: inf)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return math.inf
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return math.inf
    fin = np.isfinite(a) & np.isfinite(b)
    if not np.array_equal(a[~fin & ~np.isnan(a)], b[~fin & ~np.isnan(b)]):
        return math.inf
    if not fin.any():
        return 0.0
    return float(np.max(np.abs(a[fin] - b[fin]) / np.spacing(np.abs(b[fin]))))


def _sum_units(got: float, ref: float, scale: float) -> float:
    """|got - ref| in units of (eps * scale + 1 ulp of ref): the unit of
    SPEC.md's bound on a sum whose terms' magnitudes add up to ``scale``."""
    if math.isnan(got) or math.isnan(ref) or not (math.isfinite(got) and math.isfinite(ref)):
        return 0.0 if got == ref or (math.isnan(got) and math.isnan(ref)) else math.inf
    unit = 2.0**-52 * scale + float(np.spacing(abs(ref)))
    return abs(got - ref) / unit


def _sum_scales(case: "LoadedCase", token_count_eps: float) -> dict:
    """For each scalar output, the sum of the magnitudes of what it adds up
    (divided by its count for the metrics)."""
    o, b = case.outputs, case.batch
    m = b.mask.astype(bool)
    count = float(m.sum()) + token_count_eps
    with np.errstate(invalid="ignore", over="ignore"):
        terms = {
            "loss": (o["agg_weight"] * o["token_loss"], 1.0),
            "ppo_kl": (np.where(m, b.logprob - b.old_logprob, 0.0), count),
            "avg_ratio": (o["ratio"], count),
            "avg_soft_gate": (o["gate"], count),
            "pos_adv_frac": (np.zeros(1), count),
        }
        return {name: float(np.nansum(np.where(np.isfinite(t), np.abs(t), 0.0))) / (n or 1.0)
                for name, (t, n) in terms.items()}


def _distances(case: "LoadedCase", res: sapo_ref.SAPOResult) -> dict:
    """Each output's distance from the stored one: arrays in ulp, the loss and
    the metrics in units of the sum bound (they are sums: their ulps say
    little when the terms cancel)."""
    scales = _sum_scales(case, res.semantics.token_count_eps)
    out = {}
    for name, arr in _outputs(res).items():
        if name == "loss":
            out[name] = _sum_units(float(arr), float(case.outputs[name]), scales["loss"])
        elif name == "metrics":
            out[name] = max((_sum_units(float(g), float(r), scales[k])
                             for k, g, r in zip(METRIC_NAMES, arr, case.outputs[name])), default=0.0)
        else:
            out[name] = _ulps(arr, case.outputs[name])
    return out


@dataclass(frozen=True)
class Change:
    case: str
    output: str
    error: float  # ulp for arrays; units of eps * sum|terms| + 1 ulp for the loss and metrics
    path: str = "fast"  # which oracle path disagrees: "reproducible" or "fast"
    allowed: float = ULP_TOLERANCE

    def describe(self) -> str:
        unit = "ulp" if self.output not in ("loss", "metrics") else "units of eps*sum|terms| + ulp"
        return (f"{self.case} {self.output}: {self.error:.3g} {unit} on the {self.path} path "
                f"(allowed: {self.allowed:g})")


def verify(directory: Path | None = None) -> tuple[dict, list[Change], int]:
    """Recompute every case with the current oracle: (manifest, changes,
    number of cases).  A set made by the reproducible path (manifest version
    2) must be reproduced by it bit for bit; the fast path must agree within
    ULP_TOLERANCE ulp per token and SUM_TOLERANCE units of the sum bound for
    the loss and metrics (SPEC.md, "Accuracy").  Older sets are held to the
    fast path's tolerances on both paths.  Raises GoldenError for a broken
    set."""
    directory = Path(directory or default_dir())
    manifest, cases = load(directory)
    bit_exact = manifest.get("oracle_path") == "reproducible"
    changes = []
    for case in cases:
        for path in ("reproducible", "fast"):
            try:
                res = _oracle(case.batch, case.meta["options"], case.meta["dtype"],
                              reproducible=path == "reproducible")
            except (ValueError, TypeError) as exc:
                raise GoldenError(f"{directory / 'manifest.json'}: case {case.id!r}: the oracle rejects its "
                                  f"options ({exc})") from None
            for name, err in _distances(case, res).items():
                allowed = 0.0 if bit_exact and path == "reproducible" else (
                    SUM_TOLERANCE if name in ("loss", "metrics") else ULP_TOLERANCE)
                if err > allowed:
                    changes.append(Change(case.id, name, err, path, allowed))
    return manifest, changes, len(cases)


def regenerate_text(directory: Path, *, seed: int) -> tuple[str, bool]:
    """:func:`regenerate`, as ``golden regen`` prints it: (text, True)."""
    manifest = regenerate(directory, seed=seed)
    return (f"wrote {len(manifest['cases'])} cases in {len(manifest['files'])} files to {directory} "
            f"(oracle {manifest['oracle_version']}, seed {manifest['generator_seed']})"), True


def verify_text(directory: Path | None = None) -> tuple[str, bool]:
    """:func:`verify`, as ``golden verify`` prints it: (text, all unchanged)."""
    from sapo_ref._version import ORACLE_VERSION

    directory = Path(directory or default_dir())
    manifest, changes, n = verify(directory)
    lines = []
    if manifest["oracle_version"] != ORACLE_VERSION:
        lines.append(f"note: fixtures were made by oracle {manifest['oracle_version']}, this is {ORACLE_VERSION}")
    if changes:
        more = f" (+{len(changes) - 50} more)" if len(changes) > 50 else ""
        lines.insert(0, f"{len({c.case for c in changes})} of {n} cases changed{more}: the oracle's outputs moved; "
                        f"if that is intended, bump ORACLE_VERSION and run `sapo-conformance golden regen`")
        lines += [f"  changed: {c.describe()}" for c in changes[:50]]
        return "\n".join(lines), False
    exact = "bit-identical on the reproducible path, " if manifest.get("oracle_path") == "reproducible" else ""
    lines.append(f"golden fixtures verified: {n} cases in {len(manifest['files'])} files at {directory}, {exact}"
                 f"within {ULP_TOLERANCE:g} ulp on the fast path (the loss and metrics within {SUM_TOLERANCE:g} "
                 f"units of their sum bound)")
    return "\n".join(lines), True


def reference(case: LoadedCase) -> sapo_ref.SAPOResult:
    """The stored outputs as an oracle result (for the suites' comparisons)."""
    from sapo_ref._aggregate import Denominators
    from sapo_ref._loss import Semantics

    stored = case.meta["semantics"]
    profile = sapo_ref.get_profile(stored["profile"])
    # the manifest stores the fields that vary between cases; the level and the
    # sequence advantage are the profile's own
    sem = Semantics(**{"importance_sampling_level": profile.importance_sampling_level,
                       "sequence_advantage": profile.sequence_advantage, **stored})
    o = case.outputs
    metrics = dict(zip(METRIC_NAMES, (float(x) for x in o["metrics"])))
    return sapo_ref.SAPOResult(loss=float(o["loss"]), grad=o["grad"], token_loss=o["token_loss"], gate=o["gate"],
                               ratio=o["ratio"], agg_weight=o["agg_weight"], metrics=metrics, semantics=sem,
                               denominators=Denominators(tokens=-1, sequences=-1, token_sum_norm=sem.token_sum_norm))
