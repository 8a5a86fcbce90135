"""The package's shape: no import cycles, the CLI a shell that nothing in the library imports."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "uvtag"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """uvtag modules that `path` imports anywhere in it (module level or inside functions)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # `import uvtag.a.b` names uvtag.a.b; `from uvtag.a import b` maybe a module
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):  # a package's own parents are not cycles
                found.add(t)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _imports(p, modules) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_in_uvtag():
    graph = import_graph()
    assert "uvtag.cli.common" in graph and "uvtag.batch.run" in graph  # the walk saw the packages
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_nothing_imports_the_cli_back():
    graph = import_graph()
    for module, imported in graph.items():
        if not module.startswith("uvtag.cli"):
            assert not {m for m in imported if m.startswith("uvtag.cli")}, f"{module} imports the CLI"
        elif module != "uvtag.cli":
            assert "uvtag.cli" not in imported, f"{module} imports the app module back"


def test_code_and_docs_describe_the_code_not_its_history():
    """No line narrates sessions or issues, or points at documents that do not ship with the repository."""
    import re

    root = PACKAGE.parent
    pattern = re.compile(r"\b(session|issue) \d|ENVIRONMENT\.md|UNIFORMER" + r"V2\.md|/work/|\.\./shared", re.I)
    files = [*PACKAGE.rglob("*.py"), *(root / "tests").rglob("*.py"), root / "README.md", *(root / "weights").glob("*.md")]
    hits = [f"{f.relative_to(root)}:{i}: {line.strip()}" for f in files if f != Path(__file__).resolve()
            for i, line in enumerate(f.read_text(errors="replace").splitlines(), 1) if pattern.search(line)]
    assert not hits, "\n".join(hits)
