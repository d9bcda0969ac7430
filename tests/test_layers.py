"""The package's layers (docs/ARCHITECTURE.md): an import only goes down, no circle, compat only patches.

The imports are read with ``ast``, those inside functions included: an import placed in a function
to step around a circle is still a circle.  ``from vissl_aasae.x import y`` counts as an import of
the module ``vissl_aasae.x.y`` when there is one, else of ``vissl_aasae.x``.
"""

import ast

from conftest import REPO

PACKAGE = REPO / "vissl_aasae"

# bottom to top; a module may import its own layer and the ones below (docs/ARCHITECTURE.md)
LAYERS = (
    ("errors", "usage", "settings", "models", "losses", "progress", "images", "console"),
    ("data", "checkpoints", "run"),
    ("trainer", "hooks", "compat", "config_check"),
    ("registry", "config_compose"),
    ("evaluation", "interop", "detection", "visualize"),
    ("launcher",),
    ("cli",),
)
ADD_ONS = LAYERS[4]
# the add-ons import the core, not each other; one implementation each of these two
ADD_ON_REUSE = {("interop", "evaluation"), ("interop", "detection")}
MAX_DEFERRED = 5  # imports of the plugin's own modules inside functions, each with a ``# ...`` reason


def module_files():
    """{dotted module name: path} of every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = module_files()


def _resolve(name):
    """The package module an imported name is: itself, or the nearest enclosing module."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _enclosing_function(node, parents):
    while node in parents:
        node = parents[node]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return True
    return False


def imports():
    """(importer, imported, line, deferred, source line) for each import of a package module."""
    found = []
    for module, path in MODULES.items():
        text = path.read_text()
        lines = text.splitlines()
        tree = ast.parse(text)
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
            else:
                continue
            deferred = _enclosing_function(node, parents)
            targets = {_resolve(name) for name in names if name.split(".")[0] == "vissl_aasae"}
            for target in sorted(targets - {None, module}):
                found.append((module, target, node.lineno, deferred, lines[node.lineno - 1]))
    return found


IMPORTS = imports()


def layer_of(module: str) -> int:
    part = module.split(".")[1] if "." in module else ""
    for index, names in enumerate(LAYERS):
        if part in names:
            return index
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py (docs/ARCHITECTURE.md): add it")


def test_every_module_has_a_layer():
    for module in MODULES:
        if module != "vissl_aasae":
            layer_of(module)


def test_no_import_circle():
    """Tarjan's strongly connected components of the import graph: each of more than one module is a circle."""
    graph = {module: set() for module in MODULES}
    for importer, imported, *_ in IMPORTS:
        graph[importer].add(imported)
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    where = [
        f"{a}:{line} imports {b}{' (in a function)' if deferred else ''}"
        for circle in circles
        for a, b, line, deferred, _ in IMPORTS
        if a in circle and b in circle
    ]
    assert circles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in circles) + "\n" + "\n".join(where)


def test_imports_only_go_down():
    """No module imports a layer above its own, nor the package root (its ``__init__`` loads nothing);
    the add-ons import each other only for the two reuses README names."""
    upward = []
    for importer, imported, line, _, _ in IMPORTS:
        if imported == "vissl_aasae":
            upward.append(f"{importer}:{line} imports the package root")
            continue
        if importer == "vissl_aasae":
            continue
        below, above = layer_of(importer), layer_of(imported)
        pair = (importer.split(".")[1], imported.split(".")[1])
        if above > below:
            upward.append(f"{importer}:{line} imports {imported} (layer {above} > {below})")
        elif below == above == LAYERS.index(ADD_ONS) and pair[0] != pair[1] and pair not in ADD_ON_REUSE:
            upward.append(f"{importer}:{line}: add-on imports add-on {imported}")
    assert upward == []


def test_core_imports_no_add_on():
    """README "Layout": the core (what the method needs, the layers below the add-ons) never imports an add-on."""
    offending = [
        f"{importer}:{line}: {imported}"
        for importer, imported, line, _, _ in IMPORTS
        if importer != "vissl_aasae" and layer_of(importer) < LAYERS.index(ADD_ONS)
        if imported != "vissl_aasae" and imported.split(".")[1] in ADD_ONS
    ]
    assert offending == []


def test_compat_only_patches():
    """compat patches VISSL and calls down into the core: it imports no launcher, hooks, add-on or command line."""
    forbidden = ("launcher", "hooks", "cli", "registry", "config_compose", *ADD_ONS)
    offending = [
        f"{importer}:{line}: {imported}"
        for importer, imported, line, _, _ in IMPORTS
        if importer.startswith("vissl_aasae.compat") and imported.split(".")[1] in forbidden
    ]
    assert offending == []


def test_deferred_imports_are_few_and_say_why():
    """Imports of the plugin's own modules sit at the top of a module, except a handful, each with a
    ``# ...`` reason on its line (what deferring it buys: e.g. --help without torch)."""
    deferred = sorted({(a, line, source.strip()) for a, _, line, is_deferred, source in IMPORTS if is_deferred})
    listing = "\n".join(f"{a}:{line}: {source}" for a, line, source in deferred)
    assert len(deferred) <= MAX_DEFERRED, f"{len(deferred)} deferred imports:\n{listing}"
    assert [d for d in deferred if "#" not in d[2]] == [], f"deferred imports without a reason:\n{listing}"


def test_the_layers_are_documented():
    """docs/ARCHITECTURE.md names every layer this test knows, in this order."""
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    positions = [min(text.index(f"`{name}") for name in names) for names in LAYERS]
    assert positions == sorted(positions)


def test_the_package_root_loads_nothing():
    """``import vissl_aasae`` (what ``vissl_aasae.cli`` needs) imports none of its modules."""
    assert [b for a, b, *_ in IMPORTS if a == "vissl_aasae"] == []
