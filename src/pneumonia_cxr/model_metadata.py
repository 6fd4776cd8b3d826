"""The metadata beside a saved model (`models/NAME.json`, written by `train.save_model`), checked before it is trusted.

Invariant: `predict` and the review app use a model only after its metadata passed `read_metadata`: every field they
read has the type and range the notebooks write (a threshold strictly between 0 and 1, a calibration slope above 0,
finite numbers, a positive image size, a known resize mode); anything else is a `MetadataError` naming the file and
the field, never a traceback or a silently wrong probability. Fields the scorer does not read (members,
hyperparameters, the commit) are kept as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .data.decode import RESIZE_MODES
from .train import MODEL_FORMAT, metadata_path, read_json

Probability = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
MAX_IMAGE_SIZE = 4096  # px a side: far above any model of the project (224 px); a guard against a typo of 224000


class Calibration(BaseModel):
    """Platt scaling, p' = sigmoid(a * logit(p) + b), fitted on validation (`calibration.fit_platt`)."""

    model_config = ConfigDict(strict=True, extra="allow")
    method: Literal["platt"]
    a: Annotated[float, Field(gt=0, allow_inf_nan=False)]  # increasing: the decision must not flip
    b: Finite
    prevalence: Probability | None = None  # the share of pneumonia calibration was fitted on (models saved since)


class ModelMetadata(BaseModel):
    """The fields of a model's `.json` that scoring reads."""

    model_config = ConfigDict(strict=True, extra="allow")
    format: Literal[MODEL_FORMAT]  # type: ignore[valid-type]
    task: Literal["binary", "ternary"]
    classes: list[str]
    image_size: Annotated[int, Field(gt=0, le=MAX_IMAGE_SIZE)]
    resize: Literal[RESIZE_MODES]  # type: ignore[valid-type]
    threshold: Probability | None = None
    threshold_calibrated: Probability | None = None
    thorax_width: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None
    calibration: Calibration | None = None


class MetadataError(ValueError):
    """A model's metadata missing, unreadable, or outside its schema; the message names the file and the field."""


def describe_error(error: dict) -> str:
    """One pydantic error as 'field: what is wrong (got value)'."""
    where = ".".join(str(part) for part in error["loc"]) or "the whole file"
    if error["type"] in ("model_type", "dict_type"):
        return f"{where}: must be a JSON object, not {type(error['input']).__name__}"
    if error["type"] == "missing":
        return f"{where}: missing"
    got = repr(error["input"])
    return f"{where}: {error['msg'].replace('Input should', 'should')} (got {got[:60]}{'...' if len(got) > 60 else ''})"


def check_schema(schema: type[BaseModel], data, what: str, error: type[Exception]) -> None:
    """Raise `error("what: field: what is wrong; ...")` when `data` breaks `schema`, one `describe_error` a field."""
    try:
        schema.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(describe_error(e) for e in exc.errors(include_url=False))
        raise error(f"{what}: {problems}") from None


def validate_metadata(meta, meta_file: str | Path) -> dict:
    """`meta` (as read from `meta_file`) checked against `ModelMetadata`.

    Args:
        meta: the parsed JSON.
        meta_file: its file, for the message.

    Returns:
        `meta` unchanged (a dict: every field, checked or not).

    Raises:
        MetadataError: naming `meta_file` and each field that breaks the schema.
    """
    check_schema(ModelMetadata, meta, f"{meta_file}: invalid model metadata", MetadataError)
    return meta


def read_metadata(model_path: str | Path, task: Literal["binary", "ternary"]) -> dict:
    """The validated metadata beside `model_path`, for a model of kind `task`.

    A binary model needs a threshold and two classes; a ternary one three classes (normal, bacterial, viral).

    Args:
        model_path: the `.keras` file.
        task: the kind the caller needs.

    Returns:
        The metadata, every field.

    Raises:
        MetadataError: the model or its `.json` missing, unreadable, outside the schema, or of another kind; the
            message names the file.
    """
    model_path = Path(model_path)
    meta_file = metadata_path(model_path)
    if not model_path.is_file():
        raise MetadataError(f"{model_path}: model file does not exist")
    if not meta_file.is_file():
        raise MetadataError(f"{model_path}: no metadata file {meta_file.name} beside it; not a pneumonia_cxr model")
    try:
        meta = read_json(meta_file)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MetadataError(f"{meta_file}: unreadable metadata ({exc})") from None
    if isinstance(meta, dict) and meta.get("format") != MODEL_FORMAT:
        raise MetadataError(f"{meta_file}: not pneumonia_cxr metadata (format {meta.get('format')!r})")
    validate_metadata(meta, meta_file)
    if task == "binary" and (meta["task"] != "binary" or meta.get("threshold") is None or len(meta["classes"]) != 2):
        raise MetadataError(f"{model_path}: not a binary model with a saved threshold ({meta_file.name})")
    if task == "ternary" and (meta["task"] != "ternary" or len(meta["classes"]) != 3):
        raise MetadataError(f"{model_path}: not a ternary (normal, bacterial, viral) model ({meta_file.name})")
    return meta
