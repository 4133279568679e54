"""The code's structure: no import cycles, every module importable alone,
and a command line that only parses, calls the library and maps exit codes."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sapo_ref", "conformance")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__main__":
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every import statement that can run: module level or in a function,
    but not under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child
            stack.append(child)


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules its import statements name."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        package = name if is_pkg else name.rpartition(".")[0]
        edges = set()
        for node in _import_nodes(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names]
            for t in targets:
                while t and t not in modules:  # "import a.b.c": the deepest project module named
                    t = t.rpartition(".")[0]
                if t and t != name:
                    edges.add(t)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state, path = [], {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_the_graph_sees_imports_inside_functions_and_relative_ones():
    graph = import_graph()
    assert "conformance.suite.records" in graph["conformance.report"]  # module level, relative
    assert "conformance.golden" in graph["conformance.cli"]  # inside a function
    assert "conformance.candidate" not in graph["conformance.drivers._base"]  # TYPE_CHECKING only


def test_find_cycles_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:10])


def test_every_module_imports_alone():
    """Each module in a clean set of project modules (catches a module that
    only works when another happened to be imported first)."""
    names = sorted(_modules())
    code = (
        "import importlib, sys\n"
        f"names = {names!r}\n"
        "bad = []\n"
        "for n in names:\n"
        "    for m in [m for m in sys.modules if m.split('.')[0] in ('sapo_ref', 'conformance')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(n)\n"
        "    except Exception as exc:\n"
        "        bad.append(f'{n}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "", proc.stdout[-3000:]


def test_the_command_line_is_thin():
    """cli.py parses, calls the library and maps outcomes to exit codes: it
    stays small and never imports the suites or the runners."""
    cli = ROOT / "conformance" / "cli.py"
    n = len(cli.read_text().splitlines())
    assert n <= 360, f"cli.py has {n} lines: move what is not argument handling into the library"
    graph = import_graph()
    forbidden = {m for m in graph if m.startswith(("conformance.suite", "conformance.drivers"))}
    forbidden |= {"conformance.evaluate", "conformance.tolerance", "conformance.buckets"}
    assert not graph["conformance.cli"] & forbidden, graph["conformance.cli"] & forbidden


#: literals that state one concept: each must appear once in the packages
ONE_PLACE = {
    '"float64", "float32", "float16", "bfloat16"': "the dtype names (sapo_ref._dtypes.DTYPES)",
    '"logprob", "old_logprob", "advantages", "mask"': "the input names (conformance.types.INPUT_NAMES)",
    "0x7FFF": "bfloat16 rounding (sapo_ref._dtypes.round_to)",
    "except importlib.metadata.PackageNotFoundError": "a package's version (conformance.types.package_version)",
    "= 1.05": "the default tau_neg (sapo_ref.profiles.DEFAULT_TAU_NEG)",
    '"SAPO_GOLDEN_DIR"': "the golden directory variable (conformance.golden.ENV_VAR)",
}


def test_each_concept_is_stated_once():
    sources = {name: path.read_text() for name, path in _modules().items()}
    problems = []
    for literal, concept in ONE_PLACE.items():
        where = [name for name, text in sources.items() for _ in range(text.count(literal))]
        if len(where) != 1:
            problems.append(f"{concept}: {literal!r} appears in {where or 'no module'}")
    assert not problems, "; ".join(problems)
