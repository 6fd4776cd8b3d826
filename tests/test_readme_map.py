"""BuzzFeed-style: the README or its reference page names every output file the repository keeps, so a reader can
find what made it."""

import fnmatch
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _expand(token: str) -> list[str]:
    """`img/{roc_pr,confusion}.png` -> both paths (every brace group expanded, as a shell would)."""
    m = re.search(r"\{([^{}]*)\}", token)
    if not m:
        return [token]
    return [x for alt in m.group(1).split(",") for x in _expand(token[: m.start()] + alt + token[m.end() :])]


def readme_patterns(readme: str) -> list[str]:
    return [p for token in re.findall(r"`([^`\s]+)`", readme) for p in _expand(token)]


def is_named(path: str, patterns: list[str]) -> bool:
    # a pattern with a folder matches the whole path; a bare name (a table cell's `transfer_robustness.csv`) the
    # file name
    return any(fnmatch.fnmatch(path if "/" in p else Path(path).name, p) for p in patterns)


def test_readme_names_every_kept_output_file():
    tracked = subprocess.run(
        ["git", "ls-files", "img", "reports"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    outputs = [f for f in tracked if not f.startswith("reports/seeds/")]  # seeds: the same files, one line says so
    assert len(outputs) > 40
    patterns = readme_patterns((ROOT / "README.md").read_text() + (ROOT / "docs" / "reference.md").read_text())
    missing = [f for f in outputs if not is_named(f, patterns)]
    assert missing == [], f"README.md and docs/reference.md do not say which notebook or command writes: {missing}"


def test_is_named_reads_braces_globs_and_bare_names():
    patterns = readme_patterns("writes `img/{roc_pr,gradcam}.png`, `reports/figures/01_*.png`, `x_robustness.csv`")
    assert is_named("img/gradcam.png", patterns) and is_named("reports/figures/01_sizes.png", patterns)
    assert is_named("reports/metrics/x_robustness.csv", patterns)
    assert not is_named("img/confusion.png", patterns) and not is_named("reports/figures/02_curves.png", patterns)
