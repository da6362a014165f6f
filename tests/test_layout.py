"""The code's shape: public APIs of the libraries only, no import cycles, every imported package declared."""

from __future__ import annotations

import ast
import graphlib
import sys
import tomllib
from pathlib import Path

from conftest import ROOT, import_graph, imports

CHECKED = sorted(path for folder in ("src", "tests", "bench", "tutorials") for path in (ROOT / folder).rglob("*.py"))
TUTORIALS = {path.stem for path in (ROOT / "tutorials").glob("*.py")}  # imported by name inside the folder
LIBRARIES = {"hydra", "hydra_plugins", "omegaconf", "mlflow", "keras", "tensorflow", "joblib"}
# import name -> distribution, where they differ
DISTRIBUTIONS = {
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "PIL": "pillow",
    "hydra": "hydra-core",
    "tensorflow": "tensorflow-cpu",
}


def private(name: str) -> bool:
    """`_name`, but not `__dunder__` or a `_sunder_` config key such as `_target_`."""
    return name.startswith("_") and not name.endswith("_")


def library_names(tree: ast.AST) -> set[str]:
    """Local names bound to a library's module or object (`import keras`, `from mlflow.models import Model`)."""
    names = set()
    for module, imported in imports(tree):
        if module.split(".")[0] in LIBRARIES:
            names |= set(imported) or {module.split(".")[0]}
    return names


def private_uses(path: Path, root: Path = ROOT) -> list[str]:
    """The underscore modules, names and attributes of the libraries that a file uses."""
    tree = ast.parse(path.read_text())
    found = [
        f"import {module} {names}"
        for module, names in imports(tree)
        if module.split(".")[0] in LIBRARIES
        and (any(private(part) for part in module.split(".")) or any(private(name) for name in names))
    ]
    ours = library_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            # A library's object (keras._x, Model._y) or an attribute set on any object (a tensor's _keras_logits).
            if (
                (isinstance(base, ast.Name) and base.id in ours)
                or isinstance(node.ctx, ast.Store)
                and not (isinstance(base, ast.Name) and base.id in ("self", "cls"))
            ):
                found.append(f"line {node.lineno}: .{node.attr}")
    return [f"{path.relative_to(root)} {use}" for use in found]


def test_no_private_api_of_the_libraries_is_used():
    assert [use for path in CHECKED for use in private_uses(path)] == []


def test_the_private_api_check_finds_what_it_looks_for(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from hydra._internal.utils import get_args_parser\nfrom mlflow.models.utils import _save_example\n"
        "import keras\nkeras.src._private()\ny = f()\ny._keras_logits = 1\ncfg._target_\n"
    )
    uses = [use.split(" ", 1)[1] for use in private_uses(probe, tmp_path)]
    assert sorted(uses) == [
        "import hydra._internal.utils ['get_args_parser']",
        "import mlflow.models.utils ['_save_example']",
        "line 4: ._private",
        "line 6: ._keras_logits",
    ]


def test_the_package_has_no_import_cycles():
    _modules, graph = import_graph()
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming a cycle


TEST_MODULES = {path.stem for path in (ROOT / "tests").glob("test_*.py")}  # a test may use another's helpers


def test_every_imported_package_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = [
        *project["project"]["dependencies"],
        *sum(project["project"]["optional-dependencies"].values(), []),
        *project["dependency-groups"]["dev"],
    ]
    distributions = {
        d.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower()
        for d in declared
        if isinstance(d, str)
    }
    used = set()
    for path in CHECKED:
        for module, _names in imports(ast.parse(path.read_text())):
            top = module.split(".")[0]
            if top not in sys.stdlib_module_names and top not in {
                "pipeline",
                "conftest",
                "common",
                "tutorials",
                *TUTORIALS,
                *TEST_MODULES,
            }:
                used.add(DISTRIBUTIONS.get(top, top).replace("_", "-").lower())
    undeclared = sorted(used - distributions - {"hydra-plugins"})  # Hydra's plugins' namespace: their packages are declared
    assert undeclared == []


def test_only_the_model_adapters_ask_which_kind_of_model_they_hold():
    """Prediction, evaluation, plots and training use `core.nets.Net`; pipeline/core/nets.py alone knows Keras from numpy."""
    asking = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
                kind = ast.unparse(node.args[1])
                if ("MLP" in kind or "keras.Model" in kind) and path.name != "nets.py":
                    asking.append(f"{path.relative_to(ROOT)}:{node.lineno} isinstance(..., {kind})")
    assert asking == []


# What each folder of src/pipeline may import: stages -> config/tracking -> core -> plumbing (the top-level modules).
MAY_IMPORT = {
    "plumbing": {"plumbing"},
    "core": {"core", "plumbing"},
    "config": {"config", "core", "plumbing"},
    "tracking": {"tracking", "config", "core", "plumbing"},
    "stages": {"stages", "tracking", "config", "core", "plumbing"},
    "playground": {"playground", "stages", "tracking", "config", "core", "plumbing"},  # an app on top of the stages
}
CORE_NEVER_IMPORTS = ("hydra", "hydra_plugins", "omegaconf", "mlflow")


def folder(module: str) -> str:
    """`core` for pipeline.core.data, `plumbing` for pipeline.files and the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or parts[1:] and parts[1] in MAY_IMPORT else "plumbing"


def layer_violations(graph: dict[str, set[str]], libraries: dict[str, set[str]]) -> list[str]:
    """Imports against the one-way rule: a folder importing one it may not, the core importing Hydra or MLflow."""
    found = [f"{a} imports {b}" for a, targets in graph.items() for b in targets if folder(b) not in MAY_IMPORT[folder(a)]]
    found += [
        f"{a} imports {lib}" for a, libs in libraries.items() if folder(a) == "core" for lib in libs & set(CORE_NEVER_IMPORTS)
    ]
    return sorted(found)


def test_dependencies_run_one_way():
    modules, graph = import_graph()
    libraries = {
        name: {module.split(".")[0] for module, _ in imports(ast.parse(path.read_text()))} for name, path in modules.items()
    }
    assert layer_violations(graph, libraries) == []


def test_the_layer_check_finds_what_it_looks_for():
    graph = {"pipeline.core.data": {"pipeline.stages.train", "pipeline.files"}, "pipeline.files": {"pipeline.core.data"}}
    assert layer_violations(graph, {"pipeline.core.nets": {"numpy", "hydra"}}) == [
        "pipeline.core.data imports pipeline.stages.train",
        "pipeline.core.nets imports hydra",
        "pipeline.files imports pipeline.core.data",
    ]


def test_nothing_outside_the_tests_imports_them():
    outside = [path for path in CHECKED if ROOT / "tests" not in path.parents]
    users = [
        str(path.relative_to(ROOT))
        for path in outside
        for module, _ in imports(ast.parse(path.read_text()))
        if module.split(".")[0] in ("tests", "conftest")
    ]
    assert users == []
