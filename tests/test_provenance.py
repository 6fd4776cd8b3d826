"""git_commit: the commit a result was made with, flagged when tracked code differs from it."""

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

    from pneumonia_cxr.runner import code_fingerprint

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
