"""BuzzFeed-style: stages.toml, the README or its reference page names every output file the repository keeps, so a
reader can find what made it; and no committed output names the machine it was made on."""

import fnmatch
import re
import subprocess
from pathlib import Path

from pneumonia_cxr.stages import STAGES

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
    # seeds: the same files, one line says so; a file deleted in this checkout is no longer kept
    outputs = [f for f in tracked if not f.startswith("reports/seeds/") and (ROOT / f).exists()]
    assert len(outputs) > 40
    patterns = readme_patterns((ROOT / "README.md").read_text() + (ROOT / "docs" / "reference.md").read_text())
    patterns += [out for stage in STAGES for out in stage.outputs]  # what each stage makes, declared in stages.toml
    missing = [f for f in outputs if not is_named(f, patterns)]
    assert missing == [], f"stages.toml, README.md and docs/reference.md do not say what writes: {missing}"


def test_is_named_reads_braces_globs_and_bare_names():
    patterns = readme_patterns("writes `img/{roc_pr,gradcam}.png`, `reports/figures/01_*.png`, `x_robustness.csv`")
    assert is_named("img/gradcam.png", patterns) and is_named("reports/figures/01_sizes.png", patterns)
    assert is_named("reports/metrics/x_robustness.csv", patterns)
    assert not is_named("img/confusion.png", patterns) and not is_named("reports/figures/02_curves.png", patterns)


# a machine's folder: a home, a scratch or shared mount, a Windows drive (after a quote, a space, `=` or a line start)
MACHINE_PATH = re.compile(
    r"""(?:^|[\s"'=(,:])(?:/(?:work|home|Users|tmp|root|mnt|scratch|private|var/folders)/|[A-Za-z]:\\)"""
)


def _absolute_values(value, where: str) -> list[str]:
    """Every string in a JSON value that is an absolute path ("/x/..."), as `where: value`."""
    if isinstance(value, dict):
        return [hit for k, v in value.items() for hit in _absolute_values(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [hit for i, v in enumerate(value) for hit in _absolute_values(v, f"{where}[{i}]")]
    return [f"{where}: {value}"] if isinstance(value, str) and re.match(r"/[^/\s]+/", value) else []


def machine_paths(path: Path) -> list[str]:
    """Where file `path` names someone's machine: a machine folder anywhere in it (a notebook's sources and outputs
    included); in a JSON file (a notebook's parameters, run.json, eda.json) any value that is an absolute path."""
    import json

    text = path.read_text(errors="replace")
    hits = [
        f"line {text.count(chr(10), 0, m.start()) + 1}: {m.group(0).strip()}..." for m in MACHINE_PATH.finditer(text)
    ]
    if path.suffix == ".json":
        hits += _absolute_values(json.loads(text), path.name)
    elif path.suffix == ".ipynb":
        book = json.loads(text)
        hits += _absolute_values(book["metadata"].get("papermill", {}).get("parameters", {}), "parameters")
        for cell in book["cells"]:
            if "injected-parameters" in cell["metadata"].get("tags", []):
                src = "".join(cell["source"])
                hits += [f"injected: {line}" for line in src.splitlines() if re.search(r"=\s*[\"']/", line)]
    return hits


def test_committed_outputs_name_no_machine():
    """No absolute path in a committed notebook (sources and outputs), anything under reports/metrics, or docs/: the
    runner injects folders relative to the notebook and records them relative to the repository."""
    tracked = subprocess.run(
        ["git", "ls-files", "*.ipynb", "reports/metrics", "reports/benchmarks", "docs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert any(f.endswith(".ipynb") for f in tracked) and any(f.startswith("reports/metrics/") for f in tracked)
    found = {f: hits for f in tracked if (ROOT / f).is_file() and (hits := machine_paths(ROOT / f))}
    assert found == {}, f"absolute paths (a machine's folders) in committed outputs: {found}"


def test_machine_paths_finds_what_it_should_and_only_that(tmp_path):
    import json

    run = tmp_path / "run.json"
    run.write_text(json.dumps({"data_dir": "../shared/data/chest_xray_224", "models": "models", "note": "a/b"}))
    assert machine_paths(run) == []
    run.write_text(json.dumps({"data_dir": "/data/chest_xray_224", "x": [{"root": "/srv/x/y"}]}))
    assert machine_paths(run) == ["run.json.data_dir: /data/chest_xray_224", "run.json.x[0].root: /srv/x/y"]
    page = tmp_path / "page.md"
    page.write_text("ran from /home/alice/repo and C:\\Users\\bob; see `docs/x.md` and 1/2 and https://a.b/tmp/c\n")
    assert len(machine_paths(page)) == 2
    book = nbformat_book(tmp_path, 'data_dir = "/work/shared/data"\nseed = 7', {"data_dir": "../../shared/data"})
    assert sorted(h.split(" ")[0] for h in machine_paths(book)) == ["injected:", "line"]
    book = nbformat_book(tmp_path, 'data_dir = "../../shared/data"', {"data_dir": "/x/shared/data"})
    assert machine_paths(book) == ["parameters.data_dir: /x/shared/data"]


def nbformat_book(tmp_path: Path, injected: str, parameters: dict) -> Path:
    """A notebook with an injected-parameters cell and papermill's record of the parameters."""
    import nbformat

    cell = nbformat.v4.new_code_cell(injected, metadata={"tags": ["injected-parameters"]})
    book = nbformat.v4.new_notebook(cells=[cell], metadata={"papermill": {"parameters": parameters}})
    path = tmp_path / "nb.ipynb"
    nbformat.write(book, str(path))
    return path
