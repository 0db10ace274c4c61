"""Who may import what: the hosts sit on the use-case layer, only the layer reaches the engine.

Imports are read with ``ast`` (module level and inside functions alike), so a
late ``from .. import pipeline`` in a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "siril_denoise"
ENGINE = ("siril_denoise.pipeline", "siril_denoise.training")


def imports(path: Path, root: Path = PACKAGE.parent) -> set[str]:
    """Every module ``path`` (a file under ``root``) imports, relative imports resolved
    (``from .. import x`` gives both the package and ``package.x``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = path.relative_to(root).with_suffix("").parts
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}
    return found


def _engine_imports(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    return sorted(m for m in imports(path, root) if any(m == e or m.startswith(e + ".") for e in ENGINE))


def test_the_import_reader_sees_late_and_relative_imports(tmp_path):
    # a probe in a copy of the package's layout, not in the package (the install test copies that folder)
    probe = tmp_path / "siril_denoise" / "siril" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("def f():\n    from .. import pipeline\n    from ..training import train\n")
    assert _engine_imports(probe, tmp_path) == ["siril_denoise.pipeline", "siril_denoise.training",
                                                "siril_denoise.training.train"]


@pytest.mark.parametrize("path", sorted((PACKAGE / "siril").glob("*.py")), ids=lambda p: p.name)
def test_nothing_under_siril_imports_the_pipeline_or_training(path):
    assert not _engine_imports(path), f"{path.name} imports {_engine_imports(path)}: go through siril_denoise.usecases"


@pytest.mark.parametrize("path", sorted((PACKAGE / "siril").glob("*.py")), ids=lambda p: p.name)
def test_only_the_adapter_imports_sirilpy(path):
    """And start(), in __init__.py, which only asks whether sirilpy is there (am I inside Siril?)."""
    uses = sorted(m for m in imports(path) if m.split(".")[0] == "sirilpy")
    assert not uses or path.name in ("adapter.py", "__init__.py"), f"{path.name} imports {uses}"


def test_the_use_case_layer_imports_no_host():
    own = imports(PACKAGE / "usecases.py")
    assert not [m for m in own if m.split(".")[0] == "sirilpy" or m.startswith(("siril_denoise.siril",
                                                                               "siril_denoise.cli"))]


def test_the_cli_does_not_import_the_pipeline_or_training():
    assert not _engine_imports(PACKAGE / "cli.py")


def _members(protocol: type) -> set[str]:
    return {name for cls in protocol.__mro__ if cls.__name__ in ("Feedback", "ImageHost", "FrameHost")
            for name in vars(cls) if not name.startswith("_")}


def test_the_siril_hosts_provide_what_the_use_cases_need():
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "sirilpy_standin"))
    from siril_denoise import usecases
    from siril_denoise.siril.adapter import SirilHost
    from siril_denoise.siril.seqfile import SeqFileHost

    needed = _members(usecases.ImageHost) | _members(usecases.FrameHost)
    assert {"read_frame", "write_image", "should_cancel", "discard_frames", "prepare_training"} <= needed
    assert not [n for n in needed if not callable(getattr(SirilHost, n, None))]
    siril = SirilHost(None)
    files = SeqFileHost(siril, "light_")
    assert isinstance(files, usecases.FrameHost) and isinstance(siril, usecases.ImageHost)


@pytest.mark.parametrize("script", sorted((PACKAGE.parent / "scripts").glob("SirilDenoise_*.py")), ids=lambda p: p.name)
def test_each_entry_script_carries_the_version_gate_siril_looks_for(script):
    """Siril hides a script whose double-quoted check_module_version literal fails."""
    assert 'sirilpy.check_module_version(">=1.0.8")' in script.read_text()


def test_start_refuses_an_old_sirilpy_before_anything_else(monkeypatch, capsys):
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "sirilpy_standin"))
    from siril_denoise.siril import runner, start

    monkeypatch.setattr(runner, "main", lambda job: pytest.fail("ran on an old sirilpy"))
    assert start("SirilDenoise_Image.py", "image", lambda sirilpy: False) == 1
    assert "needs sirilpy 1.0.8 or newer" in capsys.readouterr().out
