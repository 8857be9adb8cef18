"""The featurizer's process does not load pandas: only the batch path of the features needs it."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import services.featurizer.__main__, services.featurizer.app
from services.common.features import OnlineFeatures, FEATURE_NAMES
print(sorted(m for m in ("pandas", "pyarrow") if m in sys.modules))
"""


def test_featurizer_imports_no_pandas() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_batch_path_still_reachable_from_the_package() -> None:
    from services.common import features
    from services.common.features.batch import featurize_many

    assert features.featurize_many is featurize_many
