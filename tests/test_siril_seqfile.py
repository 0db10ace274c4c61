"""Reading Siril's ``.seq`` files, and the host that reads a sequence's frames itself."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from siril_denoise.siril.seqfile import (
    SeqFileError,
    SeqFileHost,
    find_seq,
    frame_file,
    parse_seq,
    read_seq,
    scan_frames,
    siril_to_array_homography,
)

sys.path.insert(0, str(Path(__file__).parent / "sirilpy_standin"))
from standin_session import read_fits, write_fits, write_seq  # noqa: E402

SHIFTED = [1, 0, 3.5, 0, 1, -2.25, 0, 0, 1]
IDENTITY = [1, 0, 0, 0, 1, 0, 0, 0, 1]


def test_a_plain_sequence_as_siril_writes_it(tmp_path):
    path = write_seq(tmp_path / "light_.seq", "light_", [True, False, True, True], reference=2)
    seq = read_seq(path)
    assert (seq.name, seq.beg, seq.number, seq.selnum, seq.fixed) == ("light_", 1, 4, 3, 5)
    assert seq.reference == 2 and seq.version == 4 and seq.type == "regular" and seq.layers == 1
    assert [img.filenum for img in seq.images] == [1, 2, 3, 4]
    assert seq.selected == [0, 2, 3]
    assert seq.registration == {} and seq.homographies() is None


def test_registration_lines_give_the_homographies(tmp_path):
    path = write_seq(tmp_path / "light_.seq", "light_", [True] * 3, layers=3, reg_layer="1",
                     registration=[IDENTITY, SHIFTED, IDENTITY])
    seq = read_seq(path)
    regs = seq.registration["1"]
    assert len(regs) == 3 and regs[1].stars == 57 and regs[1].fwhm == pytest.approx(2.31)
    homs = seq.homographies()
    assert homs is not None and homs[1] == tuple(SHIFTED)


def test_a_frame_that_failed_to_register_has_no_homography_and_the_others_keep_theirs(tmp_path):
    # Siril 1.4.4 writes "H 0 0 0 0 0 0 0 0 0" for a frame it could not register
    path = write_seq(tmp_path / "light_.seq", "light_", [True] * 3,
                     registration=[IDENTITY, [0.0] * 9, SHIFTED])
    assert read_seq(path).homographies() == [tuple(IDENTITY), None, tuple(SHIFTED)]


def test_siril_homographies_count_rows_from_the_bottom():
    # Measured in Siril 1.4.4: frame = rot90(reference) (exact), registered with -2pass, gave
    # H = [[0, -1, 1023], [1, 0, 0], [0, 0, 1]] for 1024 px frames. In array coordinates
    # (rows from the top) rot90 maps the frame's (x, y) onto the reference's (y, 1023 - x).
    h_siril = [0, -1, 1023, 1, 0, 0, 0, 0, 1]
    h = siril_to_array_homography(h_siril, 1024)
    np.testing.assert_allclose(h, [[0, 1, 0], [-1, 0, 1023], [0, 0, 1]], atol=1e-12)
    # A translation only changes the sign of its vertical part.
    np.testing.assert_allclose(siril_to_array_homography(SHIFTED, 100),
                               [[1, 0, 3.5], [0, 1, 2.25], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(siril_to_array_homography(IDENTITY, 100), np.eye(3), atol=1e-12)


def test_frames_without_a_seq_file_are_found_as_convert_leaves_them(tmp_path):
    # `convert light -out=DIR` makes light_00001.fit ... but no light_.seq until a later command
    for i in (1, 2, 3):
        write_fits(tmp_path / f"light_{i:05d}.fit", np.full((16, 16), 1000 + i, np.uint16))
    write_fits(tmp_path / "r_light_00001.fit", np.zeros((16, 16), np.uint16))
    seq = scan_frames("light_", tmp_path)
    assert seq is not None and seq.from_files and seq.path == tmp_path / "light_.seq"
    assert [i.filenum for i in seq.images] == [1, 2, 3] and seq.selected == [0, 1, 2]
    assert seq.fixed == 5 and seq.homographies() is None
    assert scan_frames("dark_", tmp_path) is None
    host = SeqFileHost(_Host(tmp_path), "light_")
    info = host.sequence_info()
    assert info.selected == [0, 1, 2] and info.homographies is None
    assert int(host.read_frame(info, 2)[0][0, 0]) == 1003
    assert any("No light_.seq yet" in line for line in host.lines)


@pytest.mark.parametrize("letter,kind", [("S", "SER"), ("F", "FITSEQ"), ("A", "film")])
def test_single_file_types_are_recognised(tmp_path, letter, kind):
    path = write_seq(tmp_path / "light_.seq", "light_", [True] * 2, seq_type=letter)
    assert read_seq(path).type == kind


def test_variable_sizes_and_other_first_numbers(tmp_path):
    path = write_seq(tmp_path / "v_.seq", "v_", [True, True], filenums=[7, 9],
                     variable_sizes=[(100, 80), (98, 81)])
    seq = read_seq(path)
    assert seq.variable and seq.beg == 7
    assert [(i.filenum, i.rx, i.ry) for i in seq.images] == [(7, 100, 80), (9, 98, 81)]


def test_old_files_are_read_and_their_shifts_not_used_as_matrices():
    text = ("S light_ 1 2 2 5 0 3\nL 1\nI 1 1\nI 2 1\n"
            "R0 0 0 2.1 2.0 0.9 0.5\nR0 3.5 -1 2.2 2.1 0.8 0.6\n"
            "M0-0 100 100 1 1 1 1 1 1 1 1 1 1 1 1\n")
    seq = parse_seq(text)
    assert seq.name == "light_" and seq.version == 3 and seq.number == 2
    assert seq.registration["0"][1].shift == (3.5, -1.0)
    assert seq.homographies() is None
    assert seq.skipped == {"M": 1}


@pytest.mark.parametrize("text,words", [
    ("#nothing here\n", "no S line"),
    ("S 'a_' 1 3 3 5 -1 4 0 0 0\nL 1\nI 1 1\nI 2 1\n", "declares 3 frames but lists 2"),
    ("S 'a_' 1 1 1 5 -1 4 0 0 0\nI 1 1\nI 2 1\n", "more I lines"),
    ("S 'a_' 1 0 0 5 -1 4 0 0 0\n", "empty"),
    ("I 1 1\n", "no S line before"),
])
def test_damaged_files_are_clear_errors(text, words):
    with pytest.raises(SeqFileError, match=words):
        parse_seq(text)


def test_find_by_name_with_or_without_seq_or_by_path(tmp_path):
    wd = tmp_path / "wd"
    wd.mkdir()
    path = write_seq(wd / "light_.seq", "light_", [True])
    assert find_seq("light_", wd) == path
    assert find_seq("light_.seq", wd) == path
    assert find_seq(str(path), tmp_path / "elsewhere") == path
    with pytest.raises(SeqFileError) as err:
        find_seq("dark_", wd)
    assert str(wd / "dark_.seq") in str(err.value) and "working directory" in str(err.value)


def test_frame_extension_comes_from_the_files(tmp_path):
    path = write_seq(tmp_path / "light_.seq", "light_", [True, True])
    write_fits(tmp_path / "light_00001.fits", np.zeros((8, 8), np.uint16))
    seq = read_seq(path)
    assert frame_file(seq, tmp_path, 0) == tmp_path / "light_00001.fits"
    assert frame_file(seq, tmp_path, 1) is None


class _Host:
    """The few host calls :class:`SeqFileHost` passes on."""

    def __init__(self, wd: Path) -> None:
        self.wd, self.lines = wd, []

    def working_dir(self) -> Path:
        return self.wd

    def fits_extension(self) -> str:
        return ".fit"

    def log(self, message: str, level: str = "info") -> None:
        self.lines.append(message)


def test_host_reads_selected_frames_and_writes_new_files_keeping_header_and_depth(tmp_path):
    frames = [np.full((16, 20), 1000 + i, np.uint16) for i in range(3)]
    for i, f in enumerate(frames, start=1):
        write_fits(tmp_path / f"light_{i:05d}.fit", f, {"OBJECT": "M42", "FRAMENUM": i})
    write_seq(tmp_path / "light_.seq", "light_", [True, False, True], registration=[IDENTITY] * 3)
    host = SeqFileHost(_Host(tmp_path), "light_")
    info = host.sequence_info()
    assert info.selected == [0, 2] and (info.width, info.height, info.layers) == (20, 16, 1)
    assert info.homographies is not None and np.allclose(info.homographies[1], np.eye(3))
    data, meta = host.read_frame(info, 2)
    assert data.dtype == np.uint16 and int(data[0, 0]) == 1002 and meta.object == "M42"
    out = host.write_frame(info, 2, data.astype(np.float32) + 0.4, "dn_", history="zsn2n strength 1.00")
    assert out == tmp_path / "dn_light_00003.fit"
    written, header = read_fits(out)
    assert written.dtype == np.uint16 and int(written[0, 0]) == 1002
    assert header["FRAMENUM"] == 3 and "zsn2n" in str(header["HISTORY"])
    with pytest.raises(Exception, match="not a selected frame"):
        host.read_frame(info, 1)


def test_host_turns_siril_homographies_into_array_ones_and_keeps_failed_frames_apart(tmp_path):
    for i in (1, 2, 3):
        write_fits(tmp_path / f"light_{i:05d}.fit", np.full((16, 20), 1000, np.uint16))
    write_seq(tmp_path / "light_.seq", "light_", [True] * 3, reference=0,
              registration=[IDENTITY, SHIFTED, [0.0] * 9])
    info = SeqFileHost(_Host(tmp_path), "light_").sequence_info()
    assert info.homographies is not None and info.homographies[2] is None
    np.testing.assert_allclose(info.homographies[1], [[1, 0, 3.5], [0, 1, 2.25], [0, 0, 1]], atol=1e-12)
