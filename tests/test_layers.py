"""The package's layers, read from the source's folders and import statements (every one, also inside
functions). The layer map is ``socialpipe.pipeline.LAYERS``; each ``pipeline/`` subfolder is one layer.

- a module imports only from its own layer or a lower one;
- a stage (``socialpipe.stages.<name>``) imports the layers below it and its own modules, never another stage;
- code outside a stage imports it only through its package (``socialpipe.stages.speech``), never a module in it;
- no module imports the old top-level names ``pipeline`` or ``stages``;
- no two modules import each other, directly or through others.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from socialpipe.pipeline import LAYERS
from tests.conftest import REPO

SOURCE_ROOTS = {"socialpipe": REPO / "socialpipe", "socialpipe.pipeline": REPO / "pipeline",
                "socialpipe.stages": REPO / "stages"}
def project_modules() -> dict[str, Path]:
    """Module name -> file, for every module of the installed package's source."""
    modules = {}
    for package, folder in SOURCE_ROOTS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


MODULES = project_modules()


def imports_of(path: Path) -> set[str]:
    """Every module name an import statement in ``path`` names (``from a import b`` gives ``a.b`` when that
    is a module, else ``a``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                names.add(full if full in MODULES else node.module)
    return names


GRAPH = {module: {name for name in imports_of(path) if name in MODULES} - {module}
         for module, path in MODULES.items()}


def layer(module: str) -> str:
    """The layer of a module: a ``pipeline/`` subfolder, ``stage:<name>``, or ``app`` (the top-level package)."""
    parts = module.split(".")
    if module.startswith("socialpipe.pipeline."):
        return parts[2]
    if module.startswith("socialpipe.stages."):
        return "stage:" + parts[2]
    if module == "socialpipe.stages":
        return "stages"
    if module == "socialpipe.pipeline":
        return "contracts"  # only the layer map and the version
    return "app"


def rank(layer_name: str) -> int:
    return LAYERS.index("stages" if layer_name.startswith("stage") else layer_name)


def test_every_pipeline_folder_is_a_layer_of_the_map():
    folders = {path.name for path in (REPO / "pipeline").iterdir() if (path / "__init__.py").is_file()}
    assert folders == set(LAYERS) - {"stages", "app"}
    flat = [path.name for path in (REPO / "pipeline").glob("*.py") if path.name != "__init__.py"]
    assert not flat, f"modules outside a layer folder: {flat}"


def test_the_source_is_all_found():
    assert {"socialpipe.pipeline.contracts.artifacts", "socialpipe.stages.people.stage", "socialpipe.stages.answer.attention",
            "socialpipe.pipeline.run.orchestrator", "socialpipe"} <= set(MODULES)
    assert "socialpipe.pipeline.contracts.artifacts" in GRAPH["socialpipe.pipeline.contracts.formats"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_imports_only_from_its_layer_or_below(module):
    own = layer(module)
    for target in sorted(GRAPH[module]):
        theirs = layer(target)
        assert rank(theirs) <= rank(own), f"{module} ({own}) imports {target} ({theirs}), a higher layer"
        if own.startswith("stage:") and theirs.startswith("stage:"):
            assert theirs == own, f"{module} ({own}) imports {target} ({theirs})"
        if theirs.startswith("stage:") and theirs != own:
            package = ".".join(target.split(".")[:3])
            assert target == package, f"{module} imports {target}; expected the stage's package, {package}"


def test_no_file_imports_the_old_top_level_names():
    files = [*MODULES.values(), *(REPO / "tests").rglob("*.py"), *(REPO / "benchmarks").rglob("*.py"),
             *(REPO / "sample_videos").rglob("*.py")]
    offenders = [f"{path.relative_to(REPO)}: {name}" for path in files for name in imports_of(path)
                 if name.split(".")[0] in ("pipeline", "stages")]
    assert not offenders


def test_the_import_graph_has_no_cycle():
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = path[path.index(module):] + [module]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for target in sorted(GRAPH[module]):
            visit(target, path + [module])
        done.add(module)

    for module in sorted(GRAPH):
        visit(module, [])


def test_the_layer_check_catches_a_stage_that_imports_another(tmp_path):
    """The check above can fail: an import of one stage from another is seen as crossing layers."""
    fake = tmp_path / "fake.py"
    fake.write_text("from socialpipe.stages.speech import SpeechStage\n")
    assert layer("socialpipe.stages.link") != layer(next(iter(imports_of(fake))))


def test_the_layer_check_catches_a_lower_layer_that_imports_a_higher_one():
    """A contract importing the run wiring, or evaluation importing a stage's inner module, is caught."""
    assert rank(layer("socialpipe.pipeline.contracts.formats")) < rank(layer("socialpipe.pipeline.run.stage_table"))
    assert rank(layer("socialpipe.pipeline.evaluation.scoring")) > rank(layer("socialpipe.stages.answer.layout"))
    assert "socialpipe.stages.answer.layout" != ".".join("socialpipe.stages.answer.layout".split(".")[:3])


LONGEST_FUNCTION = 80  # lines, decorators and docstring included


def test_no_function_in_the_package_is_longer_than_80_lines():
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if node.end_lineno - first + 1 > LONGEST_FUNCTION:
                    long.append(f"{module}.{node.name}: {node.end_lineno - first + 1} lines")
    assert not long, long
