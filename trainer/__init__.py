"""The trainer: point-in-time datasets, XGBoost against HAR-RV baselines, an MLflow registry
with a promotion gate, DVC-versioned data (``volstream train|evaluate|promote``).

OpenMP threads sleep instead of spinning while they wait (``OMP_WAIT_POLICY=PASSIVE``, unless
set): on a busy 2-core machine, spinning made a 2-thread XGBoost fit 17x slower than 1 thread.
It must be set before XGBoost loads its OpenMP runtime, hence here.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
