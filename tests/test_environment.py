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
    for line in text[text.index("dependencies:") :].splitlines()[1:]:
        item = line.strip()
        if not item.startswith("- ") or item.endswith(":") or item in ("- pip", "- -e ."):
            continue
        spec = item[2:].replace("=", "==", 1) if re.match(r"- [\w-]+=[^=]", item) else item[2:]
        listed[_name(spec)] = spec.replace(" ", "")
    listed.pop("python", None)
    assert listed == wanted


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not name==version"
            pins[_name(name)] = version.strip()
    return pins


def test_constraints_pin_every_dependency_within_its_range():
    """make installs with `-c constraints.txt`: each direct dependency pinned, at a version pyproject.toml admits."""
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins()
    for spec in project["dependencies"] + project["optional-dependencies"]["dev"]:
        req = Requirement(spec)
        name = _name(req.name)
        assert name in pins, f"constraints.txt does not pin {name}"
        assert req.specifier.contains(pins[name]), f"constraints.txt pins {name}=={pins[name]}, outside {spec}"
    assert "pneumonia-cxr" not in pins, "the project itself is installed from the checkout, never pinned"
