"""Provenance: the commit a result was made with (flagged when tracked code differs from it), and each notebook's
code fingerprint (its code cells and the package modules they load)."""

import subprocess

from pneumonia_cxr.train import git_commit


def test_git_commit_flags_uncommitted_code_but_not_notebooks(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "code.py").write_text("x = 1\n")
    (tmp_path / "notebook.ipynb").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    monkeypatch.chdir(tmp_path)
    clean = git_commit()
    assert len(clean) >= 7 and "+" not in clean
    (tmp_path / "notebook.ipynb").write_text('{"executed": true}\n')  # the runner rewrites notebooks in place
    assert git_commit() == clean
    (tmp_path / "src" / "code.py").write_text("x = 2\n")
    assert git_commit() == clean + "+dirty"
    monkeypatch.chdir(tmp_path / "src")  # notebooks run from a subfolder: paths are the repository's, not the cwd's
    assert git_commit() == clean + "+dirty"


def test_git_commit_outside_a_repository_is_unknown(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert git_commit() == "unknown"


def test_code_fingerprint_sees_code_and_defaults_not_the_run_or_the_story(tmp_path):
    import nbformat

    from pneumonia_cxr.provenance import code_fingerprint

    def notebook(*cells):
        book = nbformat.v4.new_notebook(cells=list(cells))
        path = tmp_path / f"nb{len(list(tmp_path.iterdir()))}.ipynb"
        nbformat.write(book, str(path))
        return code_fingerprint(path)

    params = nbformat.v4.new_code_cell("seed = 42\naugment = 0.5", metadata={"tags": ["parameters"]})
    story, train = nbformat.v4.new_markdown_cell("# why"), nbformat.v4.new_code_cell("fit(model)")
    base = notebook(params, train)
    injected = nbformat.v4.new_code_cell("seed = 7", metadata={"tags": ["injected-parameters"]})
    assert notebook(story, params, injected, train) == base  # another seed, a new narrative: the same code
    assert notebook(params, nbformat.v4.new_code_cell("fit(model, epochs=3)")) != base
    other_default = nbformat.v4.new_code_cell("seed = 42\naugment = 1.0", metadata={"tags": ["parameters"]})
    assert notebook(other_default, train) != base


def _package(root, **modules):
    """A throwaway package `pneumonia_cxr` under root: module path (dots for subpackages) -> source."""
    package = root / "pneumonia_cxr"
    for name, source in {"__init__": "", **modules}.items():
        path = package.joinpath(*name.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return package


def test_fingerprint_follows_imports_through_the_package_and_ignores_the_rest(tmp_path):
    import nbformat

    from pneumonia_cxr.provenance import code_fingerprint, imported_sources

    package = _package(
        tmp_path,
        train="from .models import build\n",
        models="def build():\n    from .data import load\n",
        **{"data.__init__": "from .cache import load\n", "data.cache": "def load(): ...\n"},
        runner="from .train import fit\n",
        report="x = 1\n",
    )
    cells = ["%matplotlib inline\nfrom pneumonia_cxr.train import fit"]  # a magic, as in a real notebook
    found = {p.relative_to(package).as_posix() for p in imported_sources(cells, package)}
    # through a relative import, one inside a function, and a package's __init__; never the runner or the report
    assert found == {"__init__.py", "train.py", "models.py", "data/__init__.py", "data/cache.py"}

    notebook = tmp_path / "nb.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cells[0])]), str(notebook))
    base = code_fingerprint(notebook, package)
    (package / "report.py").write_text("x = 2\n")
    (package / "runner.py").write_text("from .train import fit, evaluate\n")
    assert code_fingerprint(notebook, package) == base  # neither loads when the notebook runs
    (package / "data" / "cache.py").write_text("def load(): return 1\n")
    assert code_fingerprint(notebook, package) != base  # loaded three imports away


def test_the_real_notebooks_load_what_they_use():
    from pneumonia_cxr.provenance import PACKAGE, ROOT, _code_cells, imported_sources

    def loaded(notebook):
        return {p.relative_to(PACKAGE).as_posix() for p in imported_sources(_code_cells(ROOT / notebook))}

    tuner = loaded("notebooks/06_keras_tuner_search.ipynb")
    assert {"tuning.py", "models.py", "train.py", "data/pipeline.py", "data/cache.py", "notebook.py"} <= tuner
    assert not {"runner.py", "provenance.py", "report.py", "pdf.py", "cli.py", "predict.py", "scoring.py"} & tuner
    assert "tuning.py" not in loaded("notebooks/03_scratch_cnn.ipynb")


def test_clean_notebook_gives_the_injected_cell_a_fixed_id_and_drops_timing(tmp_path):
    import nbformat

    from pneumonia_cxr.runner import clean_notebook

    def executed(random_id, seconds, address):  # papermill gives the cell it injects a new random id on every run
        cell = nbformat.v4.new_code_cell("seed = 7", metadata={"tags": ["injected-parameters"]}, id=random_id)
        shown = nbformat.v4.new_code_cell(
            "x = 1",
            id="kept",
            execution_count=1,
            outputs=[nbformat.v4.new_output("execute_result", {"text/plain": "1"}, execution_count=1)],
        )
        styled = nbformat.v4.new_code_cell(
            "table.style",
            id="styled",
            execution_count=2,
            outputs=[
                nbformat.v4.new_output(
                    "execute_result",
                    {"text/html": "<table></table>", "text/plain": f"<pandas.io.formats.style.Styler at {address}>"},
                    execution_count=2,
                ),
                nbformat.v4.new_output("display_data", {"text/plain": f"<Figure at {address}>"}),
            ],
        )  # nothing richer
        book = nbformat.v4.new_notebook(
            cells=[shown, styled, cell],
            metadata={
                "papermill": {
                    "duration": seconds,
                    "input_path": f"/home/{random_id}/nb.ipynb",
                    "output_path": f"/tmp/{random_id}.ipynb",
                }
            },
        )
        path = tmp_path / f"{random_id}.ipynb"
        nbformat.write(book, str(path))
        clean_notebook(path)
        return path.read_text()

    first = executed("c22cada8", 1.5, "0x7f73f0623210")
    assert '"<table></table>"' in first and "Styler at" not in first and "<Figure at 0x7f73f0623210>" in first
    first = first.replace("0x7f73f0623210", "0x7f66de49b0d0")  # kept where it is the only output
    assert first == executed("62775f5a", 2.5, "0x7f66de49b0d0")
    assert '"id": "kept"' in first and '"execute_result"' in first
    assert '"execution_count": 1' in first and "duration" not in first  # nbval needs the count of a cell that ran
    assert "input_path" not in first and "output_path" not in first


def test_comments_docstrings_and_layout_do_not_change_a_fingerprint(tmp_path):
    import nbformat

    from pneumonia_cxr.provenance import code_fingerprint

    book = tmp_path / "nb.ipynb"
    nbformat.write(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("from pneumonia_cxr import metrics")]), str(book)
    )

    def fingerprint(source):
        package = _package(tmp_path / "pkg", metrics=source)
        return code_fingerprint(book, package)

    base = fingerprint('"""Metrics."""\n\ndef auc(y, p):\n    return 0.5  # a guess\n')
    assert fingerprint('"""Metrics, reworded."""\n\n\ndef auc(y,   p):\n    """Area."""\n    return 0.5\n') == base
    assert fingerprint('"""Metrics."""\n\ndef auc(y, p):\n    return 0.6  # a guess\n') != base


def test_cell_seconds_reads_each_code_cells_time_before_cleaning_drops_it(tmp_path):
    import nbformat

    from pneumonia_cxr.runner import cell_seconds, clean_notebook

    cells = [
        nbformat.v4.new_markdown_cell("# a title", metadata={"papermill": {"duration": 0.01}}),
        nbformat.v4.new_code_cell("import numpy\nx = 1", metadata={"papermill": {"duration": 0.42}}),
        nbformat.v4.new_code_cell("history = fit(model)  # the long one", metadata={"papermill": {"duration": 251.27}}),
        nbformat.v4.new_code_cell("never_ran()"),  # papermill stopped before it: no timing
    ]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), str(path))
    assert cell_seconds(path) == [
        ["import numpy", 0.4],
        ["history = fit(model)  # the long one", 251.3],
        ["never_ran()", 0.0],
    ]
    clean_notebook(path)
    assert "duration" not in path.read_text() and [s for _, s in cell_seconds(path)] == [0.0, 0.0, 0.0]
