"""Where a notebook's numbers come from: a short hash of the code that decides them (its code cells and the package
modules they load, followed through imports). The runner writes it to run.json for every notebook; a run of another
seed counts beside the main run only when every fingerprint matches (`seeds.seed_runs`).

No notebook imports this module, so editing it changes no fingerprint. The commit a result was made with is
`train.git_commit` (notebooks load that one).
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import nbformat

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parents[1]


def _code_cells(notebook: str | Path) -> list[str]:
    """A notebook's code cells, injected parameters left out."""
    return [
        cell.source
        for cell in nbformat.read(str(notebook), as_version=4).cells
        if cell.cell_type == "code" and "injected-parameters" not in cell.metadata.get("tags", [])
    ]


def _module_file(module: str, package_dir: Path) -> Path | None:
    """`pneumonia_cxr.data.cache` -> .../pneumonia_cxr/data/cache.py (a package: its __init__.py); None if not ours."""
    first, *rest = module.split(".")
    if first != package_dir.name:
        return None
    base = package_dir.joinpath(*rest)
    return next((f for f in (base.with_suffix(".py"), base / "__init__.py") if f.is_file()), None)


def _imported_names(source: str, module: str, is_package: bool) -> set[str]:
    """Every module name an import statement in `source` may load, wherever the statement is (function bodies too);
    relative imports resolved against `module`. `from a import b` yields both `a` and `a.b` (b may be a module)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                parts = parts[: len(parts) - node.level + 1] + ([node.module] if node.module else [])
                base = ".".join(parts)
            else:
                base = node.module
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def imported_sources(cells: list[str], package_dir: Path = PACKAGE) -> list[Path]:
    """The package's source files that notebook `cells` load when they run: the modules they import, what those
    import in turn, and every package `__init__.py` on the way (importing `a.b.c` runs `a` and `a.b` first). Sorted."""
    from IPython.core.inputtransformer2 import TransformerManager

    to_python = TransformerManager().transform_cell  # `%matplotlib inline` and other magics as plain Python
    todo = set().union(*(_imported_names(to_python(cell), "__main__", False) for cell in cells))
    seen: set[Path] = set()
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for prefix in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
            path = _module_file(prefix, package_dir)
            if path is None or path in seen:
                continue
            seen.add(path)
            todo |= _imported_names(path.read_text(), prefix, path.name == "__init__.py")
    return sorted(seen)


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


def normalised_code(source: str) -> str:
    """What the code does, without what only a reader sees: the syntax tree with comments, docstrings and layout
    dropped (a comment edit or a reformat leaves it unchanged). Source that does not parse is kept as it is."""
    try:
        return ast.dump(_without_docstrings(ast.parse(source)))
    except SyntaxError:
        return source


def code_fingerprint(notebook: str | Path, package_dir: Path = PACKAGE) -> str:
    """What decides a notebook's numbers besides the run's parameters, as a short hash: the notebook's code cells, its
    parameter defaults included (injected parameters, markdown and outputs left out), and every package module those
    cells import, directly or through other modules, each as `normalised_code` (comments, docstrings and layout do not
    count). Two runs of a notebook with the same fingerprint ran the same code; a change to a module the notebook
    never loads (the runner, the report) leaves it alone.

    Args:
        notebook: the notebook, relative to the repository root (or absolute).
        package_dir: the package whose modules count (a test passes a throwaway one).

    Returns:
        12 hex digits.
    """
    return cells_fingerprint(_code_cells(ROOT / notebook), package_dir)


def module_fingerprint(module: str, args: list[str] = (), package_dir: Path = PACKAGE) -> str:
    """`code_fingerprint` of a command stage, `python -m module args...`: the module, every package module it
    imports, and its arguments (as declared, before the run's parameters fill them in).

    Args:
        module: dotted name, e.g. `pneumonia_cxr.ood`.
        args: the stage's declared arguments.
        package_dir: as in `code_fingerprint`.

    Returns:
        12 hex digits (a module not there yet hashes as just its name: it changes once the module exists).
    """
    return cells_fingerprint([f"import {module}", repr(list(args))], package_dir)


def cells_fingerprint(cells: list[str], package_dir: Path = PACKAGE) -> str:
    """The hash behind `code_fingerprint`: `cells` (Python or IPython source) and the package modules they load, each
    as `normalised_code`, the modules named by their path inside the package's parent."""
    from IPython.core.inputtransformer2 import TransformerManager

    to_python = TransformerManager().transform_cell
    digest = hashlib.sha256()
    for path in imported_sources(cells, package_dir):
        digest.update(
            path.relative_to(package_dir.parent).as_posix().encode()
            + b"\0"
            + normalised_code(path.read_text()).encode()
        )
    for source in cells:
        digest.update(normalised_code(to_python(source)).encode() + b"\0")
    return digest.hexdigest()[:12]
