"""The siril-denoise model file: an ONNX model with one metadata entry.

A model file is an ordinary ONNX model with one input ``"input"`` and one
output ``"output"``, both float32 ``(N, C, H, W)`` with dynamic batch, height
and width. Its ``metadata_props`` hold one entry under :data:`METADATA_KEY`:
a JSON object that says how the model was made and which data it fits
(method, network, channels, CFA mode, normalisation and noise model,
training summary), stamped with ``format_version`` (:data:`FORMAT_VERSION`)
and ``siril_denoise_version``. :mod:`siril_denoise.export` adds
``channels``, ``multiple`` (the spatial multiple the network needs) and
``onnx_opset``.

This module is the only place that knows that layout. It needs onnx only to
read a file (:func:`read_metadata`); torch and onnxruntime are never imported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from . import __version__
from .errors import ModelError

#: Key under which a model's metadata JSON lives in the ONNX ``metadata_props``.
METADATA_KEY = "siril_denoise"
#: Version of the metadata layout; files with a higher number are refused.
FORMAT_VERSION = 1
#: Relative error (max |onnx - torch| / max |torch|) beyond which an export is refused.
PARITY_TOLERANCE = 1e-4

_CORRUPT = ("{source} is not a valid ONNX model: the file is corrupt or truncated. Train it again "
            "(siril-denoise train), or delete it with `siril-denoise models delete NAME`.")


def read_model_bytes(model: str | os.PathLike | bytes) -> tuple[bytes, str]:
    """The bytes of a model file and a name for it in messages (its path, or "the model").

    Raises:
        ModelError: the file is missing or unreadable.
    """
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), "the model"
    path = os.fspath(model)
    try:
        return Path(path).read_bytes(), path
    except FileNotFoundError as exc:
        raise ModelError(f"Model file not found: {path}") from exc
    except OSError as exc:
        raise ModelError(f"Cannot read the model file {path}: {exc.strerror or exc}") from exc


def parse_metadata(text: str | None, source: str) -> dict:
    """Decode the metadata JSON stored in a model; ``source`` names the model in errors.

    Raises:
        ModelError: the text is missing (an ONNX file not made by
            siril-denoise), is not a non-empty JSON object, or comes from a
            newer format than :data:`FORMAT_VERSION`.
    """
    if not text:
        raise ModelError(
            f"{source} is an ONNX file but not a siril-denoise model (it carries no "
            f"siril-denoise metadata). Train or export the model with siril-denoise.")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"The metadata of {source} is damaged ({exc}); train the model again.") from exc
    if not isinstance(meta, dict) or not meta:
        raise ModelError(f"The metadata of {source} is damaged (not a JSON object with fields); "
                         "train the model again.")
    version = meta.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelError(
            f"{source} was written by a newer siril-denoise (model format {version}, this "
            f"version reads up to {FORMAT_VERSION}); update siril-denoise.")
    return meta


def read_metadata(model: str | os.PathLike | bytes) -> dict:
    """The metadata dict of a siril-denoise model file (a path or the file's bytes).

    Raises:
        ModelError: the file is missing, unreadable, corrupt or truncated, or
            is an ONNX model that siril-denoise did not write.
    """
    import onnx
    from google.protobuf.message import DecodeError

    data, source = read_model_bytes(model)
    try:
        proto = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelError(_CORRUPT.format(source=source)) from exc
    if not proto.graph.node or not proto.opset_import:
        raise ModelError(_CORRUPT.format(source=source))
    props = {p.key: p.value for p in proto.metadata_props}
    return parse_metadata(props.get(METADATA_KEY), source)


def metadata_text(metadata: Mapping[str, Any]) -> str:
    """The JSON stored in a model: ``metadata`` with ``format_version`` and ``siril_denoise_version`` set.

    Raises:
        ValueError: ``metadata`` is not JSON-serialisable (NaN and infinity
            included, which JSON cannot hold).
    """
    meta = dict(metadata)
    meta.update(format_version=FORMAT_VERSION, siril_denoise_version=__version__)
    try:
        return json.dumps(meta, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata must be JSON-serialisable: {exc}") from exc


def write_metadata(model: Any, text: str) -> None:
    """Store ``text`` (from :func:`metadata_text`) in an ``onnx.ModelProto``, replacing an earlier entry."""
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=METADATA_KEY, value=text)
