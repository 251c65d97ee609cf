"""The package's import graph: every import points down the layers of DESIGN.md, and none forms a cycle.

The graph is read from the sources with ``ast`` (every ``import``, at module level or inside a
function), so the check needs nothing installed and sees imports that only run on some paths.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mp3d_ros"

# Bottom to top. A module may import its own layer and the layers listed before it.
LAYERS = (
    ("config", "resources"),  # YAML -> dataclasses, share/ paths: no package imports at all
    ("geometry",),
    ("synthetic",),
    ("data",),
    ("model",),
    ("tracking",),
    ("messages",),
    ("inference",),
    ("evaluation",),
    ("training",),
    ("ros",),
    ("cli",),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
ROS_IMPORTS = ("rclpy", "message_filters", "tf2_ros", "launch", "launch_ros", "ament_index_python",
               "sensor_msgs", "std_msgs", "geometry_msgs", "visualization_msgs", "diagnostic_msgs",
               "builtin_interfaces", "people_msgs", "mp3d_ros.msg")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """Absolute names of everything ``path`` imports (relative imports resolved)."""
    this = module_name(path)
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = this.split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def package_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in imported_names(path):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported not in (name, "mp3d_ros"):
                targets.add(imported)
        graph[name] = targets
    return graph


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = sorted(m for m in package_graph() if m != "mp3d_ros" and layer_of(m) not in RANK)
    assert not unplaced, f"modules outside every layer of test_layers.LAYERS: {unplaced}"


def test_imports_point_down_the_layers() -> None:
    upward = sorted(f"{source} -> {target}" for source, targets in package_graph().items()
                    for target in targets
                    if source != "mp3d_ros" and RANK[layer_of(target)] > RANK[layer_of(source)])
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_cycle() -> None:
    cycle = find_cycle(package_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_only_the_ros_layer_imports_ros() -> None:
    leaks = sorted(f"{module_name(path)} imports {name}" for path in PACKAGE.rglob("*.py")
                   if layer_of(module_name(path)) != "ros"
                   for name in imported_names(path) if name.startswith(ROS_IMPORTS))
    assert not leaks, "\n".join(leaks)


@pytest.mark.parametrize("graph, cyclic", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
    ({"a": {"a2"}, "a2": set(), "b": {"b"}}, True),
])
def test_cycle_finder_finds_cycles(graph: dict[str, set[str]], cyclic: bool) -> None:
    assert (find_cycle(graph) is not None) == cyclic
