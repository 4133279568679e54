"""Running a candidate in a child process, so that its failures are records.

A certification tool runs other people's code.  With isolation (the CLI
default), the candidate is loaded and called only in a *worker* process; the
harness process plans the run, keeps the clock, and writes the report.  What
the worker can do to the run:

* raise: the check records an ``error`` with the exception (as in-process);
* crash (segfault, abort, ``os._exit``, ``SystemExit``, the OOM killer): the
  unit it was running gets an ``error`` naming the signal or exit status; a
  fresh worker continues with the next unit (after ``MAX_CRASHES`` crashes
  in one check group and dtype, that group's remaining units of that dtype
  are ``error``, not run, which bounds the time spent restarting);
* hang: each check group (``random``, ``edge``, ...) has a deadline; when it
  passes, the worker is killed, the unit in progress and the group's
  remaining units get ``error`` ("timed out"), and the next group starts a
  fresh worker;
* exhaust memory: the worker's address space is limited (``RLIMIT_AS``;
  not on CUDA, whose driver reserves address space up front), so an
  allocation beyond the limit raises MemoryError there -- an ``error`` --
  instead of taking the machine down;
* return garbage: handled by the drivers and comparisons as in-process
  (``fail``/``error`` with the reason).

Messages between the processes are JSON (``send_bytes``), never pickle: the
harness does not deserialise objects made by a process running untrusted
code.  The worker's stdout goes to stderr, so a chatty candidate cannot
corrupt the harness's own output.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from typing import Callable

from ._process import describe_exit
from .candidate import Availability, Candidate, CandidateError, CandidateInfo
from .profiles import DEFAULT_GROUP_TIMEOUT_S
from .report import decode_record, encode_record
from .suite import CHECKS_BY_NAME, InProcessRunner, Unit, failed_unit, run_unit
from .suite.records import ISOLATION

#: how long loading a candidate (importing its framework) may take
LOAD_TIMEOUT_S = 300.0
#: worker crashes tolerated in one check group and dtype before its other units are skipped
MAX_CRASHES = 3


class WorkerLost(Exception):
    """The worker died or stopped answering; the message says how."""


class CandidateCrashed(CandidateError):
    """The candidate's process died (or hung) while loading it."""


def default_memory_limit() -> int | None:
    """8 GiB, or half the machine's memory if that is less (None if unknown)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 << 30
    return min(8 << 30, total // 2)


def parse_size(text: str) -> int | None:
    """``"512M"``, ``"8G"``, ``"1073741824"`` -> bytes; ``"none"`` -> None."""
    t = text.strip().lower()
    if t in ("none", "0", "off"):
        return None
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    factor = units.get(t[-1:], 1)
    number = t[:-1] if t[-1:] in units else t
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"memory limit {text!r} is not a size like 512M, 8G or none") from None
    if not value > 0 or value * factor < 64 << 20:
        raise ValueError(f"memory limit {text!r} is below 64M")
    return int(value * factor)


# ---------------------------------------------------------------------------
# the worker process
# ---------------------------------------------------------------------------


def _send(conn, msg: dict) -> None:
    conn.send_bytes(json.dumps(msg, allow_nan=False).encode())


def _limit_memory(limit: int | None) -> None:
    if limit is None:
        return
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):  # pragma: no cover - platform without it
        pass


def _worker_main(conn, spec: str, device: str, profile: str, seed: int, memory_limit: int | None,
                 registered_as: str | None = None) -> None:
    """The child: load the candidate, then run what the parent asks."""
    os.dup2(2, 1)  # the candidate's prints go to stderr
    _limit_memory(memory_limit)
    from .loading import load_candidate, load_registered

    try:
        cand = load_registered(registered_as, spec) if registered_as else load_candidate(spec)
    except CandidateError as exc:
        _send(conn, {"type": "load-error", "message": str(exc)})
        return
    avail = cand.availability(device)
    _send(conn, {"type": "ready", "info": cand.info.as_dict(), "grad_mode": cand.grad_mode,
                 "has_gate": cand.gate is not None, "available": avail.ok, "reason": avail.reason,
                 "runnable": list(cand.runnable_devices()), "reason_anywhere": cand.availability().reason})
    local = InProcessRunner(cand, device=device, profile=profile, seed=seed)
    while True:
        try:
            msg = json.loads(conn.recv_bytes())
        except EOFError:
            return
        if msg["type"] == "exit":
            return
        if msg["type"] == "unit":
            records = run_unit(local.context, Unit(CHECKS_BY_NAME[msg["check"]], msg["dtype"], msg["loss_agg_mode"]))
            _send(conn, {"type": "records", "records": [encode_record(r) for r in records],
                         "compilations": cand.compilations()})
        elif msg["type"] == "bench":
            try:
                section = local.bench(msg["profile"], msg["dtypes"])
                _send(conn, {"type": "bench", "section": section, "compilations": cand.compilations()})
            except CandidateError as exc:
                _send(conn, {"type": "bench-error", "message": str(exc)})


# ---------------------------------------------------------------------------
# the parent's side
# ---------------------------------------------------------------------------


def _unavailable(*args, **kwargs):  # the shadow candidate's kernel: never called in the parent
    raise CandidateError("an isolated candidate runs in its worker process only")


class Worker:
    """One worker process for one candidate."""

    def __init__(self, spec: str, *, device: str, profile: str, seed: int, memory_limit: int | None,
                 registered_as: str | None = None):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        # not a daemon: checks may start processes of their own (distributed.*).  It
        # cannot outlive the harness: stop() ends it, and if the harness dies
        # the pipe closes and the worker's read loop returns.
        self.proc = ctx.Process(target=_worker_main, args=(child, spec, device, profile, seed, memory_limit, registered_as),
                                name="sapo-conformance-candidate", daemon=False)
        self.proc.start()
        child.close()
        self.spec = spec

    def receive(self, deadline: float) -> dict:
        """The next message; WorkerLost if the worker dies or the deadline passes."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerLost("timed out")
            try:
                if self.conn.poll(min(remaining, 0.5)):
                    return json.loads(self.conn.recv_bytes())
            except (EOFError, OSError):
                self.proc.join(5)
                raise WorkerLost(describe_exit(self.proc.exitcode)) from None
            if not self.proc.is_alive():
                if self.conn.poll(0):  # it said something before dying
                    continue
                self.proc.join(5)
                raise WorkerLost(describe_exit(self.proc.exitcode))

    def request(self, msg: dict) -> None:
        try:
            _send(self.conn, msg)
        except (OSError, ValueError):
            self.proc.join(5)
            raise WorkerLost(describe_exit(self.proc.exitcode)) from None

    def stop(self) -> None:
        """Ask politely, then terminate, then kill; never leaves it running."""
        if self.proc.is_alive():
            try:
                _send(self.conn, {"type": "exit"})
            except (OSError, ValueError):
                pass
            self.proc.join(2)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(2)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()


#: a unit still running after this many times the longest of its group's finished units looks hung
HUNG_FACTOR = 3.0


def timeout_reason(group: str, timeout_s: float, took: list[float], total: int,
                   running_s: float | None = None) -> str:
    """Why a check group ran out of time: slow (its units were finishing,
    the one cut off had not run much longer than they took) or hung (none
    finished, or the one cut off ran more than HUNG_FACTOR times the longest
    that did).  ``took``: the finished units' seconds; ``running_s``: how long
    the unit cut off had run (None: the deadline passed between units)."""
    done = f"{len(took)} of {total} units finished"
    if took and (running_s is None or running_s <= HUNG_FACTOR * max(took)):
        return (f"check group {group!r} used its {timeout_s:g} s with {done} (each in at most {max(took):.3g} s): "
                f"slow, not hung; give it more time with --timeout")
    slowest = f" (each in at most {max(took):.3g} s)" if took else ""
    ran = "" if running_s is None else f", this one ran {running_s:.3g} s"
    return f"check group {group!r} did not finish within {timeout_s:g} s: {done}{slowest}{ran} (the candidate hung?)"


@dataclass
class IsolatedRunner:
    """A candidate in a worker process (conformance.suite.Runner): the shadow
    the parent plans with, and its worker."""

    spec: str
    device: str
    profile: str
    seed: int
    memory_limit: int | None
    group_timeout_s: float = DEFAULT_GROUP_TIMEOUT_S
    #: ``spec`` is this entry point's "module:attr" (loaded as ``loading.load_registered`` does)
    registered_as: str | None = None
    candidate: Candidate | None = None
    available: bool = False
    reason: str = ""
    #: the devices it can run on here, and why none if it can run on none (``list``)
    runnable: tuple = ()
    reason_anywhere: str = ""
    worker: Worker | None = None
    where = "in a separate process"
    #: the candidate's compile count (``Candidate.compile_count``): summed over
    #: the workers that have ended, and the current worker's latest answer
    compiled_before: int | None = None
    compiled_now: int | None = None

    def start(self) -> None:
        """Start a worker and wait for it to load the candidate.  Raises
        CandidateError when loading fails (cleanly or by crashing)."""
        self.worker = Worker(self.spec, registered_as=self.registered_as, device=self.device, profile=self.profile,
                             seed=self.seed, memory_limit=self.memory_limit)
        try:
            msg = self.worker.receive(time.monotonic() + LOAD_TIMEOUT_S)
        except WorkerLost as exc:
            self.close()
            name = self.registered_as or self.spec
            raise CandidateCrashed(f"candidate {name!r}: its process {exc} while loading") from None
        if msg["type"] == "load-error":
            self.close()
            raise CandidateError(msg["message"])
        if self.candidate is None:
            info = CandidateInfo(**{k: tuple(v) if isinstance(v, list) else v for k, v in msg["info"].items()})
            self.candidate = Candidate(info, _unavailable, grad_mode=msg["grad_mode"],
                                       gate=_unavailable if msg["has_gate"] else None)
            self.available, self.reason = msg["available"], msg["reason"]
            self.runnable, self.reason_anywhere = tuple(msg["runnable"]), msg["reason_anywhere"]

    def availability(self) -> Availability:
        return Availability(self.available, self.reason)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        if self.compiled_now is not None:
            self.compiled_before = (self.compiled_before or 0) + self.compiled_now
            self.compiled_now = None

    def compilations(self) -> int | None:
        """The candidate's compilations in every worker so far (None: it does not count them)."""
        if self.compiled_now is None:
            return self.compiled_before
        return (self.compiled_before or 0) + self.compiled_now

    def _note_compilations(self, msg: dict) -> None:
        n = msg.get("compilations")
        if isinstance(n, int) and not isinstance(n, bool) and n >= 0:
            self.compiled_now = n

    def _ensure(self) -> Worker:
        if self.worker is None:
            self.start()
        return self.worker

    def run_units(self, units: list, progress: Callable | None = None, stop: Callable | None = None) -> list:
        """Every unit, in order; crashes and timeouts become error records."""
        records = []
        done = 0
        groups: dict[str, list] = {}
        for u in units:
            groups.setdefault(u.check.group, []).append(u)

        def lost(unit, message):
            return failed_unit(unit, self.device, message, where=ISOLATION)

        for group, members in groups.items():
            deadline = time.monotonic() + self.group_timeout_s
            crashes: dict[str, int] = {}
            took: list[float] = []  # how long each unit of this group that came back took
            stalled: list[str] = []  # what the unit that timed out said about the group

            def why(running_s=None, total=len(members), group=group, took=took):
                return timeout_reason(group, self.group_timeout_s, took, total, running_s)

            for unit in members:
                if crashes.get(unit.dtype, 0) >= MAX_CRASHES:
                    recs = [lost(unit, f"not run: the candidate's process crashed {MAX_CRASHES} times in check "
                                       f"group {group!r} with {unit.dtype}")]
                elif time.monotonic() >= deadline:
                    recs = [lost(unit, f"not run, the group timed out: {stalled[0] if stalled else why()}")]
                else:
                    start = time.monotonic()

                    def at_timeout(start=start):
                        stalled[:] = [why(time.monotonic() - start)]  # the rest of the group says the same
                        return stalled[0]

                    recs, trouble = self._one(unit, deadline, lost, at_timeout)
                    if trouble is None:
                        took.append(time.monotonic() - start)
                    elif trouble == "timeout":
                        deadline = time.monotonic()  # the rest of the group is not run
                    elif trouble == "crash":
                        crashes[unit.dtype] = crashes.get(unit.dtype, 0) + 1
                records.extend(recs)
                done += 1
                if progress:
                    progress(done, len(units), unit, recs)
                if stop and stop(unit, recs):
                    return records
        return records

    def _one(self, unit, deadline: float, lost, why_timeout: Callable[[], str]) -> tuple[list, str | None]:
        """One unit's records, and "timeout" or "crash" when it went wrong
        (``why_timeout()``: what a timeout says about the group)."""
        try:
            worker = self._ensure()
            worker.request({"type": "unit", "check": unit.check.name, "dtype": unit.dtype,
                            "loss_agg_mode": unit.loss_agg_mode})
            msg = worker.receive(deadline)
        except CandidateError as exc:
            return [lost(unit, f"the candidate's process could not be restarted: {exc}")], "crash"
        except WorkerLost as exc:
            self.close()
            if str(exc) == "timed out":
                return [lost(unit, f"timed out: {why_timeout()}; its process was killed")], "timeout"
            return [lost(unit, f"the candidate's process {exc} during {unit.id}")], "crash"
        self._note_compilations(msg)
        return [decode_record(r) for r in msg["records"]], None

    def bench(self, profile: str, dtypes: list) -> dict:
        """The throughput section, measured in the worker within the group
        deadline (``error`` set and no rows when it could not be)."""
        from .bench import empty_section

        try:
            worker = self._ensure()
            worker.request({"type": "bench", "profile": profile, "dtypes": list(dtypes)})
            msg = worker.receive(time.monotonic() + self.group_timeout_s)
        except (CandidateError, WorkerLost) as exc:
            self.close()
            return empty_section(self.device, f"not measured: the candidate's process {exc}")
        if msg["type"] == "bench-error":
            return empty_section(self.device, f"not measured: {msg['message']}")
        self._note_compilations(msg)
        return msg["section"]
