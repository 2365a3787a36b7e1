"""Artifacts: the versioned metrics schema, validation, and a writer that keeps a valid file on
disk at every step (an interrupted run leaves `"complete": false`, never a torn file)."""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "clgemm.metrics/1"


def schema() -> dict:
    return json.loads((resources.files("clgemm") / "data" / "metrics.schema.json").read_text())


def _validator(which: dict):
    import jsonschema  # noqa: PLC0415 - optional at run time

    cls = jsonschema.validators.validator_for(which)
    return cls(which)


def validation_errors(artifact: dict) -> list[str] | None:
    """Schema violations (empty when valid), or None when jsonschema is not importable."""
    try:
        validator = _validator(schema())
    except ImportError:
        return None
    errors = sorted(validator.iter_errors(artifact), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


def validate_artifact(artifact: dict) -> None:
    """Raise ValueError listing the schema violations (needs jsonschema)."""
    errors = validation_errors(artifact)
    if errors is None:
        raise ImportError("jsonschema is needed to validate artifacts: pip install jsonschema")
    if errors:
        raise ValueError("artifact does not match " + SCHEMA_VERSION + ":\n  " + "\n  ".join(errors[:20]))


def _clean(value: Any) -> Any:
    """JSON has no NaN/Inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _clean(value.item())
    return value


def write_json(path: str | Path, data: dict) -> None:
    """Atomic write: a reader (or a killed writer) never sees half a file."""
    from ..atomic import replacing

    with replacing(path, "w") as handle:
        json.dump(_clean(data), handle, indent=1, allow_nan=False)
        handle.write("\n")


def load_artifact(path: str | Path) -> dict:
    data = json.loads(Path(path).read_text())
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: not a {SCHEMA_VERSION} artifact "
                         f"(schema_version {data.get('schema_version')!r})")
    return data


class ArtifactWriter:
    """Holds an artifact in memory and rewrites it on disk after every change."""

    def __init__(self, path: str | Path | None, artifact: dict) -> None:
        self.path = Path(path) if path else None
        self.data = artifact
        self.data.setdefault("schema_version", SCHEMA_VERSION)
        self.data["complete"] = False
        self.flush()

    def flush(self) -> None:
        if self.path is not None:
            write_json(self.path, self.data)

    def add(self, section: str, item: Any) -> None:
        self.data.setdefault(section, []).append(item)
        self.flush()

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.flush()

    def finish(self, complete: bool) -> list[str] | None:
        """Mark complete (or not), write, and validate when jsonschema is importable."""
        from .env import utc_now

        self.data["complete"] = bool(complete)
        self.data["finished_utc"] = utc_now()
        self.data = _clean(self.data)
        self.flush()
        return validation_errors(self.data)
