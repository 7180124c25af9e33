"""The package's layers, read from the source's import statements (every one, also inside functions).

- contracts (``socialpipe.pipeline`` except the wiring modules) import only contracts;
- a stage (``socialpipe.stages.<name>``) imports contracts and its own modules, never another stage
  nor the wiring;
- only the wiring (orchestrator, CLI, evaluation, fine-tuning, report, viewer, and the top-level API) puts stages
  together;
- no module imports the old top-level names ``pipeline`` or ``stages``;
- no two modules import each other, directly or through others.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

SOURCE_ROOTS = {"socialpipe": REPO / "socialpipe", "socialpipe.pipeline": REPO / "pipeline",
                "socialpipe.stages": REPO / "stages"}
WIRING = {"socialpipe", "socialpipe.pipeline.orchestrator", "socialpipe.pipeline.cli",
          "socialpipe.pipeline.evaluation", "socialpipe.pipeline.finetuning", "socialpipe.pipeline.report",
          "socialpipe.pipeline.viewer", "socialpipe.pipeline.batch", "socialpipe.pipeline.parallel"}


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
    if module in WIRING:
        return "wiring"
    if module.startswith("socialpipe.pipeline"):
        return "contract"
    if module.startswith("socialpipe.stages."):
        return "stage:" + module.split(".")[2]
    return "package"  # socialpipe.stages itself


def test_the_source_is_all_found():
    assert {"socialpipe.pipeline.artifacts", "socialpipe.stages.people.stage", "socialpipe.stages.answer.attention",
            "socialpipe.pipeline.orchestrator", "socialpipe"} <= set(MODULES)
    assert "socialpipe.pipeline.artifacts" in GRAPH["socialpipe.pipeline.formats"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_imports_only_from_its_layer_or_below(module):
    own = layer(module)
    for target in sorted(GRAPH[module]):
        theirs = layer(target)
        if own == "contract":
            assert theirs == "contract", f"{module} (a contract) imports {target} ({theirs})"
        elif own.startswith("stage:"):
            assert theirs in ("contract", own), f"{module} ({own}) imports {target} ({theirs})"


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
