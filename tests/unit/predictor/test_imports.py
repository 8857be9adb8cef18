"""The predictor's process imports neither pandas nor the MLflow package (``docs/api.md``,
Memory): both come only with ``import mlflow``, ~100 MB of resident memory it does not need.
The full path, a champion loaded from a real MLflow server, is checked in
``tests/integration/test_model_storage.py``."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from services.predictor.__main__ import skip_unused_modules
skip_unused_modules()
from services.common.settings import Settings
from services.predictor.app import build_service, create_app
from services.predictor.settings import PredictorSettings
from services.common import registry
import services.predictor.models, services.predictor.stream, xgboost
create_app(build_service(Settings(), PredictorSettings()))
print(sorted(m for m in ("pandas", "pyarrow", "mlflow", "sklearn") if sys.modules.get(m)))
"""


def test_predictor_imports_no_pandas_or_mlflow() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
