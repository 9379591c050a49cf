"""Paths and small readers the chart tests share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "eventpipeline-operator"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())
