"""The package's architecture as a test: every import between mlxseq's units points down the
levels below (docs/architecture.md draws them), and every unit has a level."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mlxseq"

# Bottom to top; a unit imports only units of lower levels (or its own).
LEVELS = [
    {"_version"},
    {"system"},
    {"layers"},
    {"models", "decoding", "losses", "data", "scores", "metrics", "speech", "quantization"},
    {"checkpoint"},
    {"convert", "pipelines", "bundle"},
    {"training"},
    {"tasks"},
    {"config"},
    {"runs", "serve"},
    {"cli"},
]
LEVEL = {unit: level for level, units in enumerate(LEVELS) for unit in units}


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "mlxseq" else None


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_units(path: Path) -> set[str]:
    """Units a module imports, at the top or inside functions, absolutely or relatively."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {u for u in map(_unit, names) if u and ((PACKAGE / u).is_dir() or (PACKAGE / f"{u}.py").is_file())}
    return found


def _units() -> set[str]:
    return {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"} | {
        p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}


def test_every_unit_has_a_level():
    assert _units() - {"bundled"} <= set(LEVEL), f"place these in LEVELS: {sorted(_units() - set(LEVEL))}"


def test_imports_only_point_down():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "__init__.py":  # the public API re-exports from every level
            continue
        source = _unit(_module_name(path))
        for target in _imported_units(path) - {source}:
            if LEVEL[target] >= LEVEL[source]:
                upward.append(f"{path.relative_to(PACKAGE.parent)} ({source}) imports {target}")
    assert not upward, "\n".join(upward)
