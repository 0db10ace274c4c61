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


def test_training_is_remembered_in_steps_and_old_time_budgets_do_not_become_caps(tmp_path):
    path = settings_path(tmp_path)
    save_settings(Settings(steps=500, train_steps=2000, train_time_budget=900.0), path)
    settings, _ = load_settings(path)
    assert (settings.steps, settings.train_steps, settings.train_time_budget) == (500, 2000, 900.0)
    # A file from before steps: its 60 s / 600 s budgets were never chosen as a cap.
    path.write_text(json.dumps({"time_budget": 60.0, "train_time_budget": 600.0, "strength": 0.5}))
    settings, _ = load_settings(path)
    assert (settings.time_budget, settings.train_time_budget, settings.strength) == (0.0, 0.0, 0.5)
    assert Settings().steps == 0 and Settings().time_budget == 0.0  # method defaults, no cap
