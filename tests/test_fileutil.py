import os
import stat

import pytest

from siril_denoise.fileutil import write_atomic


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_written_file_has_the_usual_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_atomic(tmp_path / "model.onnx", b"abc")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_bytes() == b"abc"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temporary left behind
