"""The import rules of ``bot`` and ``scheduler``, read from the source with :mod:`ast`.

Run it from the repository root: ``python -m tests.architecture`` prints one line per
violation (``file:line: rule: what``) and exits 1, or prints a summary and exits 0.
``tests/test_architecture.py`` runs the same check in the test suite.

The layers, from the bottom up. Each may import itself and the layers named in
:data:`LAYERS`; nothing else of ``bot`` or ``scheduler``:

* ``bot.domain``: the pure core (instruments, scoring, the conversation, alerts,
  schedules). Standard library only, not even a third-party package: it is tested with
  plain values and must run anywhere.
* ``bot.logs``, ``bot.config``, ``bot.instruments``: the log format (it knows nothing of
  bot), settings from TOML (over the domain), the instrument catalog (over both). Nothing
  of the shell: every layer above may use them.
* ``bot.storage``: tables, the database handle, queries, migrations, encryption. It sits
  *below* the use cases, because the use cases are written over it (its repository and
  query modules are their storage port); it never calls up into them.
* ``bot.rendering``: every word and picture a person sees. It is handed data and never
  loads any, so it does not import storage.
* ``bot.app``: the use cases, one module each: load through storage, ask the domain,
  save with the outbox. They never name a concrete channel or an entrypoint.
* ``bot.channels`` and ``bot.outputs``: adapters on either side of the use cases.
  Channels (Telegram, SMS, console) carry messages in and out and reach the use cases
  through ``bot.app``, never storage; outputs (CSV, FHIR, the series report) read
  storage to write files for other systems.
* ``bot.bootstrap``: the one composition root; it wires everything above.
* The entrypoints, on top: ``bot.web``, ``bot.commands`` with ``bot.cli`` (and
  ``bot.__main__``), and the top-level ``scheduler`` package. They call use cases and
  never touch ``bot.storage``: opening transactions is the use cases' work, so the CLI,
  the webhooks, the web panel and the tick share one implementation of each. Nothing
  below the entrypoints imports them.

The other rules: no import circle among the modules (lazy imports inside functions count;
imports under ``if TYPE_CHECKING:`` do not, since they never run); no module uses another
module's private names (``_name``; dunders are fine); no module over :data:`MAX_LINES`
lines; at most :data:`MAX_TOP_LEVEL_MODULES` modules directly in ``bot/``; and every module
of ``bot`` belongs to a layer of the table, so a new one is placed deliberately.
"""

from __future__ import annotations

import ast
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "scheduler")
SKIPPED = ("bot/storage/migrations/versions/",)  # Alembic revisions: generated, never imported
MAX_LINES = 400
MAX_TOP_LEVEL_MODULES = 8  # .py files directly in bot/, __init__.py and __main__.py included

_CORE = ("bot.domain", "bot.config", "bot.logs", "bot.instruments")
_UNDER_BOOTSTRAP = (
    *_CORE,
    "bot.storage",
    "bot.rendering",
    "bot.app",
    "bot.channels",
    "bot.outputs",
)
_ENTRYPOINT_SAFE = tuple(layer for layer in _UNDER_BOOTSTRAP if layer != "bot.storage")
_ENTRYPOINT = (  # everything but storage (and __main__), plus the scheduler
    *("bot.domain", "bot.config", "bot.logs", "bot.instruments", "bot.rendering"),
    *("bot.app", "bot.channels", "bot.outputs", "bot.bootstrap", "bot.web"),
    *("bot.commands", "bot.cli", "scheduler"),
)

# layer -> the other layers it may import. A module belongs to the longest layer name that
# is the module or one of its packages; the bare "bot" is only bot/__init__.py itself.
LAYERS: dict[str, tuple[str, ...]] = {
    "bot": (),  # the package's own docstring: the map of these layers
    "bot.domain": (),
    "bot.logs": (),
    "bot.config": ("bot.domain",),
    "bot.instruments": ("bot.domain", "bot.config"),
    "bot.storage": ("bot.domain", "bot.config", "bot.logs"),
    "bot.rendering": ("bot.domain", "bot.config", "bot.instruments", "bot.logs"),
    "bot.app": (*_CORE, "bot.storage", "bot.rendering"),
    "bot.channels": ("bot.domain", "bot.config", "bot.logs", "bot.rendering", "bot.app"),
    "bot.outputs": (*_CORE, "bot.storage", "bot.rendering", "bot.app"),
    "bot.bootstrap": _UNDER_BOOTSTRAP,
    "bot.web": (*_ENTRYPOINT_SAFE, "bot.bootstrap"),
    "bot.commands": _ENTRYPOINT,
    "bot.cli": _ENTRYPOINT,
    "bot.__main__": ("bot.cli",),
    "scheduler": (*_ENTRYPOINT_SAFE, "bot.bootstrap"),
}
STANDARD_LIBRARY_ONLY = ("bot.domain",)  # layers that import no third-party package
STANDARD_LIBRARY = sys.stdlib_module_names
RULES = ("circle", "layer", "private", "unplaced", "size")  # the order of the report


@dataclass(frozen=True)
class Violation:
    """One broken rule, printed as ``path:line: rule: message``."""

    path: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.rule}: {self.message}"


@dataclass(frozen=True)
class Module:
    """A source file of bot/ or scheduler/, named as Python imports it."""

    name: str
    path: str  # relative to the root, with forward slashes
    is_package: bool
    tree: ast.Module
    lines: int


@dataclass(frozen=True)
class Import:
    """One module named by one import statement (``target`` is absolute and resolved)."""

    importer: str
    target: str
    line: int
    lazy: bool  # inside a function: runs when it is called, not at import

    @property
    def ours(self) -> bool:
        return self.target.split(".")[0] in PACKAGES


@dataclass
class Report:
    """What :func:`inspect` found: the counts for the summary and the violations."""

    modules: int = 0
    imports: int = 0
    violations: list[Violation] = field(default_factory=list)


def check(root: Path) -> list[Violation]:
    """Every violation of the import rules in the tree at ``root``, in report order."""
    return inspect(root).violations


def inspect(root: Path) -> Report:
    """Read the tree at ``root`` and apply every rule."""
    modules = discover(root)
    imports = [imp for module in modules.values() for imp in imports_of(module, modules)]
    violations = [
        *circles(imports, modules),
        *layer_breaches(imports, modules),
        *private_uses(modules),
        *unplaced(modules),
        *oversized(modules),
    ]
    violations.sort(key=lambda v: (RULES.index(v.rule), v.path, v.line, v.message))
    return Report(len(modules), len(imports), violations)


# Reading the tree


def discover(root: Path) -> dict[str, Module]:
    """Every module under ``root/bot`` and ``root/scheduler``, by dotted name."""
    modules: dict[str, Module] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if not relative.startswith(SKIPPED):
                module = _read(path, relative)
                modules[module.name] = module
    return modules


def _read(path: Path, relative: str) -> Module:
    parts = relative.removesuffix(".py").split("/")
    is_package = parts[-1] == "__init__"
    name = ".".join(parts[:-1] if is_package else parts)
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=relative)
    return Module(name, relative, is_package, tree, len(text.splitlines()))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def walk(node: ast.AST, lazy: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node below ``node``, with whether it runs only inside a function; the bodies
    of ``if TYPE_CHECKING:`` are left out (their ``else`` is not)."""
    for child in ast.iter_child_nodes(node):
        yield from _visit(child, lazy)


def _visit(node: ast.AST, lazy: bool) -> Iterator[tuple[ast.AST, bool]]:
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        for other in node.orelse:
            yield from _visit(other, lazy)
        return
    inner = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
    yield node, inner
    yield from walk(node, inner)


def imports_of(module: Module, modules: dict[str, Module]) -> list[Import]:
    """The modules ``module`` imports, one per module named per statement."""
    return [
        Import(module.name, target, node.lineno, lazy)
        for node, lazy in walk(module.tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for target in _targets(node, module, modules)
    ]


def _targets(
    node: ast.Import | ast.ImportFrom, module: Module, modules: dict[str, Module]
) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = from_module(node, module)
    if base is None:
        return []
    named = (_submodule(base, alias.name, modules) or base for alias in node.names)
    return list(dict.fromkeys(named))


def from_module(node: ast.ImportFrom, module: Module) -> str | None:
    """The absolute name of the module a ``from ... import`` reads (relative ones resolved
    against the importer's package); None if it climbs above the top."""
    if node.level == 0:
        return node.module
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    parts = package.split(".")
    if node.level > len(parts):
        return None
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def _submodule(base: str, name: str, modules: dict[str, Module]) -> str | None:
    """``base.name`` if that is a module of the tree (``from bot import cli``), else None."""
    candidate = f"{base}.{name}"
    return candidate if candidate in modules else None


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


# Rule 1: circles


def graph(imports: Iterable[Import], modules: dict[str, Module]) -> dict[tuple[str, str], int]:
    """Import edges between modules of the tree, each with the first line that makes it.

    Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first, so it is also an
    edge to each of those packages the importer is not itself inside."""
    edges: dict[tuple[str, str], int] = {}
    for imp in imports:
        parts = imp.target.split(".")
        for size in range(1, len(parts) + 1):
            target = ".".join(parts[:size])
            is_parent = size < len(parts)
            if target not in modules or (is_parent and _inside(imp.importer, target)):
                continue
            if target != imp.importer:
                line = edges.get((imp.importer, target), imp.line)
                edges[(imp.importer, target)] = min(line, imp.line)
    return edges


def circles(imports: Iterable[Import], modules: dict[str, Module]) -> list[Violation]:
    """One violation per distinct cycle (the shortest through each module that is on one),
    reported at the import that leaves the cycle's first module."""
    edges = graph(imports, modules)
    successors: dict[str, list[str]] = {name: [] for name in modules}
    for source, target in sorted(edges):
        successors[source].append(target)
    found = (shortest_cycle(start, successors) for start in sorted(modules))
    return [
        Violation(modules[cycle[0]].path, edges[(cycle[0], cycle[1])], "circle", " -> ".join(cycle))
        for cycle in dict.fromkeys(cycle for cycle in found if cycle)
    ]


def shortest_cycle(start: str, successors: dict[str, list[str]]) -> tuple[str, ...] | None:
    """The shortest import path from ``start`` back to it (breadth first), written from its
    smallest module name so that each cycle has one spelling: ``a -> b -> a``."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in successors[node]:
            if child == start:
                return _spelled(_path_back(node, start, came_from))
            if child not in came_from:
                came_from[child] = node
                queue.append(child)
    return None


def _path_back(node: str, start: str, came_from: dict[str, str]) -> list[str]:
    path = [node]
    while path[-1] != start:
        path.append(came_from[path[-1]])
    return path[::-1]


def _spelled(cycle: list[str]) -> tuple[str, ...]:
    first = cycle.index(min(cycle))
    turned = cycle[first:] + cycle[:first]
    return (*turned, turned[0])


# Rule 2: layers


def layer_of(module: str) -> str | None:
    """The layer a module belongs to, or None if the table places it nowhere."""
    if module == "bot":
        return "bot"
    names = [layer for layer in LAYERS if layer != "bot" and _inside(module, layer)]
    return max(names, key=len, default=None)


def layer_breaches(imports: Iterable[Import], modules: dict[str, Module]) -> list[Violation]:
    """Imports of a layer not listed for the importer's layer, and third-party imports
    where only the standard library is allowed."""
    found: list[Violation] = []
    for imp in imports:
        layer = layer_of(imp.importer)
        message = _breach(imp, layer) if layer else None
        if message:
            found.append(Violation(modules[imp.importer].path, imp.line, "layer", message))
    return found


def _breach(imp: Import, layer: str) -> str | None:
    """What is wrong with ``imp`` in ``layer``, or None if nothing is."""
    if not imp.ours:
        if layer not in STANDARD_LIBRARY_ONLY or imp.target.split(".")[0] in STANDARD_LIBRARY:
            return None
        named, message = imp.target, f"{layer} imports only the standard library, not"
    else:
        target = layer_of(imp.target)
        if target == layer or target in LAYERS[layer]:
            return None
        named = target or imp.target
        message = f"{layer} must not import"
    notes = [f"imports {imp.target}"] * (named != imp.target) + ["inside a function"] * imp.lazy
    return f"{message} {named}" + (f" ({', '.join(notes)})" if notes else "")


# Rule 3: private names


def is_private(name: str) -> bool:
    """``_name`` is private; ``__name__`` (a dunder) is not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(modules: dict[str, Module]) -> list[Violation]:
    """Private names of one module imported or read (``module._name``) by another."""
    found: list[Violation] = []
    for module in modules.values():
        aliases: dict[str, str] = {}  # local name -> the module it is bound to
        for node, _lazy in walk(module.tree):
            if isinstance(node, ast.Import | ast.ImportFrom | ast.Attribute):
                for message in _private_in(node, module, modules, aliases):
                    found.append(Violation(module.path, node.lineno, "private", message))
    return found


def _private_in(
    node: ast.Import | ast.ImportFrom | ast.Attribute,
    module: Module,
    modules: dict[str, Module],
    aliases: dict[str, str],
) -> list[str]:
    if isinstance(node, ast.Import):
        return [m for alias in node.names if (m := _private_import(alias, module, aliases))]
    if isinstance(node, ast.ImportFrom):
        return _private_from(node, module, modules, aliases)
    owner = _module_named(node.value, aliases, modules)
    if is_private(node.attr) and owner is not None and owner != module.name:
        return [f"uses {owner}.{node.attr}, private to {owner}"]
    return []


def _private_import(alias: ast.alias, module: Module, aliases: dict[str, str]) -> str | None:
    """``import bot.x._y``: a private module used outside its package."""
    top = alias.name.split(".")[0]
    aliases[alias.asname or top] = alias.name if alias.asname else top
    owner = private_package(alias.name)
    if owner is None or _inside(module.name, owner):
        return None
    return f"imports {alias.name}, private to {owner}"


def _private_from(
    node: ast.ImportFrom, module: Module, modules: dict[str, Module], aliases: dict[str, str]
) -> list[str]:
    """``from bot.x import _name`` outside bot.x, or a private module outside its package."""
    base = from_module(node, module)
    if base is None or base.split(".")[0] not in PACKAGES:
        return []
    found = []
    for alias in node.names:
        submodule = _submodule(base, alias.name, modules)
        if submodule is not None:
            aliases[alias.asname or alias.name] = submodule
        owner = private_package(submodule or base)
        if owner is not None and not _inside(module.name, owner):
            found.append(f"imports {base}.{alias.name}, private to {owner}")
        elif submodule is None and is_private(alias.name) and module.name != base:
            found.append(f"imports {base}.{alias.name}, private to {base}")
    return found


def private_package(target: str) -> str | None:
    """The package a module with a private part is private to (``bot.x._y.z`` -> ``bot.x``);
    None if no part of its name is private."""
    parts = target.split(".")
    private = [size for size in range(1, len(parts)) if is_private(parts[size])]
    return ".".join(parts[: private[0]]) if private else None


def _module_named(
    expr: ast.expr, aliases: dict[str, str], modules: dict[str, Module]
) -> str | None:
    """The module an expression like ``m`` or ``bot.x.y`` names through an import, if any."""
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name) or expr.id not in aliases:
        return None
    name = ".".join([aliases[expr.id], *reversed(parts)])
    return name if name in modules else None


# Rule 4: placement and size


def unplaced(modules: dict[str, Module]) -> list[Violation]:
    """Modules of ``bot`` that belong to no layer of the table."""
    return [
        Violation(m.path, 1, "unplaced", f"{m.name} is in no layer: add it to LAYERS")
        for m in modules.values()
        if layer_of(m.name) is None
    ]


def oversized(modules: dict[str, Module]) -> list[Violation]:
    """Modules over :data:`MAX_LINES` lines, and too many modules directly in ``bot/``."""
    found = [
        Violation(m.path, MAX_LINES + 1, "size", f"{m.lines} lines, over the {MAX_LINES} allowed")
        for m in modules.values()
        if m.lines > MAX_LINES
    ]
    top = sorted(m.path.removeprefix("bot/") for m in modules.values() if _top_level(m.path))
    if len(top) > MAX_TOP_LEVEL_MODULES:
        limit = f"over the {MAX_TOP_LEVEL_MODULES} allowed"
        message = f"{len(top)} modules directly in bot/, {limit} ({', '.join(top)})"
        found.append(Violation("bot/", 0, "size", message))
    return found


def _top_level(path: str) -> bool:
    return path.startswith("bot/") and path.count("/") == 1


def main(argv: list[str] | None = None) -> int:
    """Print each violation and return 1, or print a summary and return 0."""
    args = sys.argv[1:] if argv is None else argv
    report = inspect(Path(args[0]) if args else ROOT)
    for violation in report.violations:
        print(violation)
    if report.violations:
        return 1
    print(
        f"architecture: {report.modules} modules, {report.imports} imports checked; "
        "no circles, layer breaches, private names or oversized modules"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
