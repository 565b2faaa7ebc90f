"""The import direction of docs/architecture.md, read from the source (every import statement,
at module level or inside a function): a layer imports its own layer and the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "grmodel"

# Bottom to top; a module belongs to the first layer with a prefix of its dotted name.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("grmodel.atomic", "grmodel.config", "grmodel.counted", "grmodel.features",
                    "grmodel.metrics", "grmodel.vocab", "grmodel.codec", "grmodel.distributed",
                    "grmodel.outputs", "grmodel.progress", "grmodel.redact",
                    "grmodel.interrupts")),
    ("data", ("grmodel.data",)),
    ("models", ("grmodel.models",)),
    ("model use", ("grmodel.checkpoint", "grmodel.predict", "grmodel.evaluate", "grmodel.collapse",
                   "grmodel.locate")),
    ("training", ("grmodel.training",)),
    ("services", ("grmodel.tracking", "grmodel.registry", "grmodel.versioning", "grmodel.datasource",
                  "grmodel.validation",
                  "grmodel.k8s", "grmodel.reproduce", "grmodel.comparison",
                  "grmodel.reporting")),
    ("pipeline", ("grmodel.pipeline",)),
    ("experiments", ("grmodel.experiments",)),
    ("cli", ("grmodel.cli",)),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int | None:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


def grmodel_imports(path: Path) -> set[str]:
    """Every grmodel module ``path`` imports (``from grmodel import x`` counts as grmodel.x)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "grmodel"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "grmodel":
                found |= {f"grmodel.{a.name}" for a in node.names if a.name != "__version__"}
            elif node.module.startswith("grmodel."):
                found.add(node.module)
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_layer():
    assert [m for m in MODULES if m != "grmodel" and layer_of(m) is None] == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "grmodel"))
def test_imports_point_down(module):
    rank = layer_of(module)
    upward = sorted(f"{imported} ({LAYERS[layer_of(imported)][0]})"
                    for imported in grmodel_imports(MODULES[module])
                    if layer_of(imported) is not None and layer_of(imported) > rank)
    assert upward == [], f"{module} ({LAYERS[rank][0]}) imports a layer above it"


def test_the_pipeline_never_imports_the_experiments():
    for module, path in MODULES.items():
        if layer_of(module) == layer_of("grmodel.pipeline"):
            assert not [m for m in grmodel_imports(path) if m.startswith("grmodel.experiments")], module


def test_models_import_only_the_foundation_and_each_other():
    foundation = layer_of("grmodel.config")
    for module, path in MODULES.items():
        if module.startswith("grmodel.models"):
            bad = [m for m in grmodel_imports(path)
                   if not m.startswith("grmodel.models") and layer_of(m) != foundation]
            assert bad == [], module


def test_components_call_the_library_not_the_command_line_or_the_experiments():
    components = PACKAGE.parent / "components"
    for path in sorted(components.glob("*.py")):
        bad = [m for m in grmodel_imports(path)
               if m.startswith(("grmodel.cli", "grmodel.experiments"))]
        assert bad == [], path.name


def test_the_checker_sees_an_upward_import(tmp_path):
    """The rule can fail: a models module importing the pipeline is reported."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from grmodel.pipeline import stages\n")
    imported = grmodel_imports(probe)
    assert imported == {"grmodel.pipeline"}
    assert layer_of("grmodel.pipeline") > layer_of("grmodel.models.gr")
