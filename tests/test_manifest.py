"""manifest.json agrees with the files on disk, the package and pyproject.toml."""

import json
import re
import tomllib
from pathlib import Path

import siril_denoise

REPO = Path(__file__).resolve().parent.parent
MANIFEST = json.loads((REPO / "manifest.json").read_text())
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _names(requirements):
    return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in requirements}


def test_version_and_licence_match_the_package():
    assert MANIFEST["version"] == siril_denoise.__version__ == PYPROJECT["project"]["version"]
    assert MANIFEST["license"] == PYPROJECT["project"]["license"]
    assert MANIFEST["name"] == PYPROJECT["project"]["name"]


def test_every_entry_script_exists_and_checks_the_sirilpy_version():
    scripts = MANIFEST["scripts"]
    assert {s["label"] for s in scripts} == {"Denoise image", "Denoise sequence", "Train on this sequence"}
    want = MANIFEST["requires"]["sirilpy"]
    for script in scripts:
        text = (REPO / script["file"]).read_text()
        # Siril finds the gate with a pattern that only matches a double-quoted literal
        assert f'check_module_version("{want}")' in text, script["file"]
        assert "SPDX-License-Identifier: " + MANIFEST["license"] in text
        assert script["menu"] == Path(script["file"]).stem
        assert script["needs"] in ("image", "sequence")
    on_disk = {p.name for p in (REPO / "scripts").glob("*.py")}
    assert on_disk == {Path(s["file"]).name for s in scripts}


def test_dependencies_match_pyproject():
    deps = MANIFEST["dependencies"]
    assert set(deps["python"]) == _names(PYPROJECT["project"]["dependencies"])
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {d.lower() for d in deps["gui"]} == _names(extras["gui"])
    assert {d.lower() for d in deps["training"]} == _names(extras["train"])
    assert MANIFEST["requires"]["siril"] == ">=1.4.0"
