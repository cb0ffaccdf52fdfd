"""Records ready for JSON columns: no NaN or infinity (None instead), numpy scalars as plain numbers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def json_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``record`` that JSON can hold; arrays and tables are left out."""
    clean: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        if isinstance(value, np.ndarray) or hasattr(value, "colnames"):
            continue
        clean[key] = value
    return clean
