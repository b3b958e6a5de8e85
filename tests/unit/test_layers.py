"""The package's folders are layers: no import points up a layer, none goes round in a circle.

Every ``import`` in every module of ``cluster_service`` is read with ``ast``,
including the ones inside functions and ``TYPE_CHECKING`` blocks, so a lazy
import cannot hide a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "cluster_service"

# Bottom to top. A module may import its own layer or any layer below it.
LAYERS: list[set[str]] = [
    {"config", "errors"},
    {"observability"},
    {"concurrency"},
    {"rpc"},
    {"domain"},
    {"api"},
    {"wiring"},
    {"app", "revoke", "broker_permissions", "server", ""},
]
# Only the HTTP layer (and the app factory that assembles it) may know the web framework.
WEB_LIBRARIES = {"flask", "werkzeug", "flask_limiter", "marshmallow", "apispec"}
WEB_ALLOWED = {"api", "app", ""}  # "": the package's lazy create_app facade


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """Every module ``name`` imports (third-party ones by their top-level name)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # "from .. import errors" imports a module, not ".."
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in MODULES else target)
    return found


def internal_imports(name: str) -> set[str]:
    return {m for m in imports_of(name) if m in MODULES and m != name}


def layer_of(name: str) -> int:
    top = name.split(".")[1] if "." in name else ""
    for index, members in enumerate(LAYERS):
        if top in members:
            return index
    raise AssertionError(f"{name} is in no layer: add its folder to LAYERS")


def test_every_module_is_in_a_layer() -> None:
    for name in MODULES:
        layer_of(name)


def test_every_folder_is_a_package() -> None:
    for folder in [PACKAGE, *(p for p in PACKAGE.rglob("*") if p.is_dir())]:
        if folder.name != "__pycache__":
            assert (folder / "__init__.py").exists(), f"{folder} has no __init__.py"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_import_points_up_a_layer(name: str) -> None:
    upward = {m for m in internal_imports(name) if layer_of(m) > layer_of(name)}
    assert not upward, f"{name} (layer {layer_of(name)}) imports up: {sorted(upward)}"


def test_only_the_http_layer_imports_the_web_framework() -> None:
    for name in MODULES:
        top = name.split(".")[1] if "." in name else ""
        web = {m for m in imports_of(name) if m.split(".")[0] in WEB_LIBRARIES}
        if top not in WEB_ALLOWED:
            assert not web, f"{name} imports {sorted(web)}"


def find_cycle() -> list[str] | None:
    graph = {name: internal_imports(name) for name in MODULES}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name)):
            return cycle
    return None


def test_no_import_cycle() -> None:
    cycle = find_cycle()
    assert cycle is None, " -> ".join(cycle or [])


def test_the_walk_sees_lazy_imports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The checker itself: an import inside a function counts."""
    lazy = tmp_path / "lazy.py"
    lazy.write_text("def f():\n    from .api import routes\n")
    monkeypatch.setitem(MODULES, "cluster_service.config_lazy_probe", lazy)
    assert "cluster_service.api.routes" in internal_imports("cluster_service.config_lazy_probe")
