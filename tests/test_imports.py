"""The package's structure (docs/architecture.md): who may import whom, no circles, short modules.

The graph is read from the source (every ``import`` statement, function-level ones included,
since a lazy import is still a dependency), so a test fails on the commit that breaks a rule,
not when a user's import order happens to trip over it. One test runs a prediction in a fresh
interpreter and checks that no training module was loaded.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "csvdnet"
MAX_MODULE_LINES = 400
MAX_BENCHMARK_LINES = 500
TRAINING_USERS = ("csvdnet.training", "csvdnet.cli.training")
"""Where ``csvdnet.training`` may be imported: training itself and the CLI's train command."""


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The csvdnet modules ``name`` imports (each resolved to the deepest existing module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                base_name = ".".join(base + ([node.module] if node.module else []))
            else:
                base_name = node.module or ""
            candidates = [f"{base_name}.{alias.name}" for alias in node.names] + [base_name]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in modules:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _package_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph without edges from a package's ``__init__`` into its own modules."""
    return {name: {t for t in targets if not t.startswith(name + ".")}
            for name, targets in graph.items()}


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    assert _cycles(_package_edges(_graph())) == []


def test_only_training_and_the_train_command_import_training():
    offenders = {name: sorted(t for t in targets if t.startswith("csvdnet.training"))
                 for name, targets in _graph().items()
                 if not name.startswith(TRAINING_USERS)}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_serving_code_does_not_import_training():
    # What predict, evaluate and export run with must not need the trainer's modules.
    graph = _graph()
    for prefix in ("csvdnet.inference", "csvdnet.evaluation", "csvdnet.export", "csvdnet.run"):
        for name, targets in graph.items():
            if name.startswith(prefix):
                assert not [t for t in targets if t.startswith("csvdnet.training")], name


@pytest.mark.parametrize("folder,limit", [("csvdnet", MAX_MODULE_LINES),
                                          ("benchmarks", MAX_BENCHMARK_LINES)])
def test_no_module_is_longer_than_the_limit(folder, limit):
    long = {str(p.relative_to(ROOT)): n for p in sorted((ROOT / folder).rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > limit}
    assert long == {}


def test_a_prediction_loads_no_training_module(tiny_run, exported_model, tmp_path):
    # In a fresh interpreter: predict with the run directory and with its export, then list
    # the csvdnet modules loaded.
    manifest, run_dir = tiny_run
    script = f"""
import json, sys
from csvdnet.inference.predictor import Predictor
from csvdnet.io import read_cohort
subject = read_cohort({str(manifest)!r}).subjects[0]
for model in ({str(run_dir)!r}, {str(exported_model)!r}):
    result = Predictor.from_dir(model).predict(subject)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("csvdnet"))))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "csvdnet.inference.predictor" in loaded and "csvdnet.run.network" in loaded
    assert [m for m in loaded if m.startswith("csvdnet.training")] == []
