"""Remembered choices of the Siril scripts: defaults, round trip, corrupt files."""

import json

from siril_denoise.siril.settings import Settings, load_settings, save_settings, settings_path


def test_missing_file_gives_defaults(tmp_path):
    settings, problem = load_settings(settings_path(tmp_path))
    assert settings == Settings() and problem is None


def test_round_trip(tmp_path):
    path = settings_path(tmp_path / "siril")
    save_settings(Settings(choice="model:mycam", strength=0.7, use_gpu=False, prefix="nr_"), path)
    settings, problem = load_settings(path)
    assert problem is None
    assert (settings.choice, settings.strength, settings.use_gpu, settings.prefix) == (
        "model:mycam", 0.7, False, "nr_")


def test_corrupt_file_gives_defaults_and_says_so(tmp_path):
    path = settings_path(tmp_path)
    path.write_text("{not json")
    settings, problem = load_settings(path)
    assert settings == Settings()
    assert "could not be read" in problem and str(path) in problem


def test_wrong_types_are_refused_and_out_of_range_values_clamped(tmp_path):
    path = settings_path(tmp_path)
    path.write_text(json.dumps({"use_gpu": "yes"}))
    assert load_settings(path) == (Settings(), load_settings(path)[1])
    assert load_settings(path)[1] is not None
    path.write_text(json.dumps({"strength": 4, "tile": 5, "choice": "bogus", "unknown": 1}))
    settings, problem = load_settings(path)
    assert problem is None
    assert (settings.strength, settings.tile, settings.choice) == (1.0, 32, "auto")
