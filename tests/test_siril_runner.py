"""The script flow when started from Siril's menu (dialog mode), in-process with the stand-in."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "sirilpy_standin"))
sys.path.insert(0, str(Path(__file__).parent / "sirilpy_standin" / "fake_engine"))
from standin_session import Session, read_fits  # noqa: E402

pytest.importorskip("PyQt6")


@pytest.fixture
def session(tmp_path, monkeypatch):
    s = Session(tmp_path)
    monkeypatch.setenv("SIRILPY_STANDIN_STATE", str(s.dir))
    monkeypatch.setenv("MY_SOCKET", "/tmp/siril-standin.sock")
    monkeypatch.delenv("SIRIL_PYTHON_CLI", raising=False)
    return s


@pytest.fixture
def fake_engine(monkeypatch):
    import importlib

    from siril_denoise import usecases

    fake = importlib.import_module("fake_pipeline")
    monkeypatch.setattr(usecases, "engine", lambda: fake)


def test_menu_run_uses_the_dialog_choices_and_remembers_them(session, fake_engine, monkeypatch):
    from siril_denoise.siril import gui, runner
    from siril_denoise.siril.settings import Settings, load_settings, settings_path

    image = session.load_image(np.random.default_rng(0).normal(1000, 30, (24, 24)).astype(np.uint16))
    offered = {}

    def fake_dialog(job, settings, choices, work, *, title, description):
        offered["keys"] = [c.key for c in choices]
        opts = Settings(choice="nb2nb", strength=0.5).options(job)
        work(opts, lambda f, m: None, lambda: False)
        return Settings(choice="nb2nb", strength=0.5)

    monkeypatch.setattr(gui, "run_dialog", fake_dialog)
    assert runner.main("image", []) == 0
    assert offered["keys"][0] == "auto" and "zsn2n" in offered["keys"]
    assert read_fits(image)[0].std() < 30
    assert len(session.calls("undo")) == 1
    remembered, _ = load_settings(settings_path(session.state["configdir"]))
    assert (remembered.choice, remembered.strength) == ("nb2nb", 0.5)


def test_menu_run_without_image_shows_a_message_box(session, monkeypatch):
    from siril_denoise.siril import gui, runner

    monkeypatch.setattr(gui, "run_dialog", lambda *a, **k: pytest.fail("no dialog without an image"))
    assert runner.main("image", []) == 1
    boxes = session.records("messages.jsonl")
    assert len(boxes) == 1 and "No image is loaded" in boxes[0]["message"]
