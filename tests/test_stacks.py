"""'Is this image a stack?' is answered once (siril_denoise.stacks), the same for every reader."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from siril_denoise.stacks import LIVETIME_RATIO, is_stack, stack_state


@pytest.mark.parametrize("meta, expected", [
    (None, (None, None)),
    ({}, (None, None)),
    ({"stackcnt": 12}, (True, 12)),
    ({"stackcnt": 1}, (False, None)),
    ({"is_stack": True}, (True, None)),
    ({"is_stack": True, "stackcnt": 30}, (True, 30)),
    ({"is_stack": False}, (False, None)),
    ({"is_stack": False, "stackcnt": 5}, (True, 5)),  # the count is stronger than a default flag
    ({"exposure": 60.0, "livetime": 600.0}, (True, 10)),
    ({"exposure": 60.0, "livetime": 60.0 * LIVETIME_RATIO}, (True, 2)),
    ({"exposure": 60.0, "livetime": 61.0}, (False, None)),
    ({"exposure": 0.0, "livetime": 600.0}, (None, None)),
    ({"stackcnt": float("nan")}, (None, None)),
])
def test_stack_state(meta, expected):
    assert stack_state(meta) == expected
    assert is_stack(meta) is (expected[0] is True)


def test_objects_and_mappings_are_read_alike():
    from siril_denoise.io import ImageMeta

    assert stack_state(ImageMeta(exposure=30.0, livetime=300.0)) == stack_state({"exposure": 30.0, "livetime": 300.0})


HEADERS = [{"EXPTIME": 60.0, "LIVETIME": 90.0}, {"EXPTIME": 60.0, "LIVETIME": 600.0}, {"STACKCNT": 4},
           {"EXPTIME": 60.0}, {"EXPTIME": 60.0, "LIVETIME": 80.0}]


def _keywords(header: dict) -> dict:
    return {"exposure": header.get("EXPTIME"), "livetime": header.get("LIVETIME"), "stackcnt": header.get("STACKCNT")}


@pytest.mark.parametrize("header", HEADERS, ids=str)
def test_the_file_reader_and_the_library_agree(header):
    """LIVETIME = 1.5 EXPTIME was a sub for the readers and a stack of 2 for the library."""
    from astropy.io import fits

    from siril_denoise.io import image_meta_from_header
    from siril_denoise.library import LibraryEntry, match_entry

    meta = image_meta_from_header(fits.Header(header))
    assert meta.is_stack == is_stack(_keywords(header))
    sub_model = LibraryEntry("subs", Path("subs.onnx"), {"is_stack": False, "channels": 1, "camera": {}})
    flagged = any("this image is a stack" in r for r in match_entry(sub_model, meta).reasons)
    assert flagged == meta.is_stack


@pytest.mark.parametrize("header", HEADERS, ids=str)
def test_the_siril_reader_agrees(header):
    sys.path.insert(0, str(Path(__file__).parent / "sirilpy_standin"))
    from types import SimpleNamespace

    from siril_denoise.siril.adapter import meta_from_siril

    keywords = SimpleNamespace(exposure=header.get("EXPTIME"), livetime=header.get("LIVETIME"),
                               stackcnt=header.get("STACKCNT"))
    meta = meta_from_siril(keywords, {}, 8)
    assert meta.is_stack == is_stack(_keywords(header))
