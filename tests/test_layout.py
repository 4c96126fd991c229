"""The package's shape (README "Layout"): small modules in small subpackages, imports that never
run in a circle, tests that import the package and never each other."""
import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "case_fast"


def _modules():
    """{dotted name: path} of the package's Python modules (the Triton kernels live in kernels/)."""
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        rel = p.relative_to(REPO).with_suffix("")
        if rel.parts[1] == "kernels":
            continue
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = p
    return out


def _imports(name, path, modules):
    """The package modules ``name`` imports anywhere in its code (function-level imports too)."""
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            # a name that is a module is that module; any other name, the module it comes from
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def test_no_module_is_long_and_no_subpackage_crowded():
    long = {str(p.relative_to(REPO)): n for p in _modules().values()
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long
    for folder in [PACKAGE] + [d for d in PACKAGE.iterdir() if (d / "__init__.py").is_file()]:
        count = len([p for p in folder.glob("*.py") if p.name != "__init__.py"])
        assert count <= 10, (folder.name, count)


def test_no_import_cycle():
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    state = {}

    def visit(m, path):
        state[m] = "open"
        for n in graph[m]:
            assert state.get(n) != "open", " -> ".join(path + [n])
            if n not in state:
                visit(n, path + [n])
        state[m] = "done"
    for m in graph:
        if m not in state:
            visit(m, [m])


def test_no_test_imports_another_test_module():
    tests = REPO / "tests"
    for p in tests.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            mods = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                    else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            assert not any(m.split(".")[-1].startswith(("test_", "conftest")) for m in mods), \
                (p.relative_to(REPO), mods)
