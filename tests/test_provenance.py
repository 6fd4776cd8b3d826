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
