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


def test_the_defaults_of_the_dialog_and_the_flags_are_the_layers():
    """One place for defaults: the dialog's remembered values and the script flags read Options."""
    from siril_denoise.siril.runner import build_parser, options_from_args
    from siril_denoise.usecases import Options, method_network

    d, s = Options(), Settings()
    assert (s.choice, s.strength, s.tile, s.overlap, s.prefix) == (
        d.choice, d.strength, d.tile, d.tile_overlap(), d.prefix)
    assert s.train_net == method_network(d.train_method)
    for job in ("image", "sequence"):
        flags = options_from_args(job, build_parser(job).parse_args([]))
        remembered = s.options(job)
        assert (flags.tile_overlap(), flags.strength, flags.tile) == (
            remembered.tile_overlap(), remembered.strength, remembered.tile) == (d.tile_overlap(), d.strength, d.tile)
        assert flags.steps is None and flags.time_limit is None and remembered.steps is None
    train = options_from_args("train", build_parser("train").parse_args([]))
    assert train.net == s.options("train").net == method_network(d.train_method)


def test_the_offered_networks_and_methods_are_known_to_the_engine():
    from siril_denoise.methods import METHODS
    from siril_denoise.networks import NETWORKS
    from siril_denoise.siril.settings import TRAIN_NETWORKS

    assert set(TRAIN_NETWORKS) <= set(NETWORKS)
    s = Settings(choice="nb2nb").normalised()
    assert s.choice == "nb2nb" and "nb2nb" in METHODS


def test_flags_out_of_range_are_refused_before_any_work():
    import pytest

    from siril_denoise.errors import DenoiseError
    from siril_denoise.siril.runner import build_parser, options_from_args

    with pytest.raises(DenoiseError):
        options_from_args("image", build_parser("image").parse_args(["--tile", "256", "--overlap", "128"]))
    for flags in (["--tile", "16"], ["--strength", "2"]):
        with pytest.raises(SystemExit):
            build_parser("image").parse_args(flags)
    with pytest.raises(DenoiseError, match="prefix"):
        options_from_args("sequence", build_parser("sequence").parse_args(["--prefix", "a/b"]))


def test_the_scripts_offer_every_single_image_method_of_the_registry():
    """Method names live in the registry only: a new method shows up in the flags, the picker and the settings."""
    from siril_denoise.methods import single_image_methods
    from siril_denoise.siril.runner import build_parser
    from siril_denoise.usecases import choices

    names = set(single_image_methods())
    assert {"zsn2n", "nb2nb"} < names  # n2v and self2self came later (issue 11)
    method = next(a for a in build_parser("image")._actions if a.dest == "method")
    assert set(method.choices) == {"auto"} | names

    class Empty:
        def match(self, meta, channels, cfa):
            return []

    assert {c.key for c in choices(Empty(), 2, None)} == {"auto"} | names
    assert all(Settings(choice=n).normalised().choice == n for n in names)
