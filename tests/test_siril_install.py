"""Installing the Siril scripts into a script folder, and removing exactly that."""

import sys

import pytest

from siril_denoise.errors import DenoiseError
from siril_denoise.siril.install import ENTRY_SCRIPTS, RECORD_NAME, default_scripts_dir, install


def test_install_places_scripts_flat_with_the_package_beside_them(tmp_path):
    target = tmp_path / "scripts"
    messages = install(target)
    assert all((target / name).is_file() for name in ENTRY_SCRIPTS)
    assert (target / "siril_denoise" / "siril" / "runner.py").is_file()
    assert (target / "siril_denoise" / "pipeline.py").exists() or (target / "siril_denoise" / "io.py").is_file()
    assert not list((target / "siril_denoise").rglob("__pycache__"))
    # Siril's flat scan sees exactly the three entry scripts
    assert sorted(p.name for p in target.glob("*.py")) == sorted(ENTRY_SCRIPTS)
    assert any("Scripts" in m for m in messages)


def test_installed_script_finds_its_bundled_package(tmp_path):
    import subprocess

    target = tmp_path / "scripts"
    install(target)
    init = target / "siril_denoise" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "9.9.9-bundled+'))
    proc = subprocess.run([sys.executable, "-u", str(target / "SirilDenoise_Image.py"), "--help"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env={"PYTHONPATH": str(__import__("pathlib").Path(__file__).parent
                                                 / "sirilpy_standin"), "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    assert "usage: SirilDenoise_Image.py" in proc.stdout
    assert "9.9.9-bundled" in proc.stdout, "the script must use the package installed beside it"


def test_uninstall_removes_only_what_was_installed(tmp_path):
    target = tmp_path / "scripts"
    target.mkdir()
    (target / "MyOwnScript.py").write_text("print('mine')\n")
    install(target)
    install(target)  # reinstalling over itself is fine
    removed = install(target, uninstall=True)
    assert len(removed) == len(ENTRY_SCRIPTS) + 1
    assert sorted(p.name for p in target.iterdir()) == ["MyOwnScript.py"]
    assert "Nothing to uninstall" in install(target, uninstall=True)[0]


def test_install_refuses_to_overwrite_a_foreign_file(tmp_path):
    target = tmp_path / "scripts"
    target.mkdir()
    (target / ENTRY_SCRIPTS[0]).write_text("someone else's\n")
    with pytest.raises(DenoiseError, match="already exists"):
        install(target)
    assert (target / ENTRY_SCRIPTS[0]).read_text() == "someone else's\n"
    assert not (target / RECORD_NAME).exists()


def test_default_folder_is_one_siril_scans(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    assert default_scripts_dir().parts[-2:] == (".siril", "scripts")
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("APPDATA", "C:/Users/me/AppData/Roaming")
    assert default_scripts_dir().parts[-2:] == ("siril", "scripts")


def test_foreign_package_folder_is_refused_before_any_script_is_written(tmp_path):
    target = tmp_path / "scripts"
    (target / "siril_denoise").mkdir(parents=True)
    (target / "siril_denoise" / "theirs.py").write_text("x = 1\n")
    with pytest.raises(DenoiseError, match="already exists"):
        install(target)
    # no orphaned entry scripts that --uninstall would not know about
    assert sorted(p.name for p in target.iterdir()) == ["siril_denoise"]
    assert (target / "siril_denoise" / "theirs.py").read_text() == "x = 1\n"


def test_a_failed_copy_leaves_nothing_behind(tmp_path, monkeypatch):
    import shutil

    target = tmp_path / "scripts"

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copytree", full_disk)
    with pytest.raises(DenoiseError, match="No space left"):
        install(target)
    assert list(target.iterdir()) == []
