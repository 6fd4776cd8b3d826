"""pyproject.toml and environment.yml list the same dependencies."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[;]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(d): d.replace(" ", "") for d in project["dependencies"] + project["optional-dependencies"]["dev"]}
    listed = {}
    text = (ROOT / "environment.yml").read_text()
    for line in text[text.index("dependencies:"):].splitlines()[1:]:
        item = line.strip()
        if not item.startswith("- ") or item.endswith(":") or item in ("- pip", "- -e ."):
            continue
        spec = item[2:].replace("=", "==", 1) if re.match(r"- [\w-]+=[^=]", item) else item[2:]
        listed[_name(spec)] = spec.replace(" ", "")
    listed.pop("python", None)
    assert listed == wanted
