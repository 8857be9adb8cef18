"""The import layers of docs/architecture.md, checked by import-linter on the real tree.

The second test runs the same contracts (read from ``pyproject.toml``) over a skeleton tree with
one forbidden import each, so a contract that could never fail would show up here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.settings import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = (
    "services/common",
    "services/ingestor",
    "services/validator",
    "services/featurizer",
    "services/predictor",
    "services/archiver",
    "services/lag_exporter",
    "trainer",
    "monitoring",
    "devstack",
    "bench",
)


def run_contracts(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_real_tree_keeps_every_contract() -> None:
    out = run_contracts(REPO_ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("services/validator", "services.featurizer"),  # stages are independent
        ("services/common", "services.predictor"),  # common imports nothing above it
        ("trainer", "services.featurizer"),  # the trainer only uses services.common
        ("services/predictor", "devstack"),  # nothing in services imports devstack
        ("trainer", "devstack"),  # nor in the trainer
        ("services/ingestor", "monitoring"),  # services sit at the bottom
    ],
)
def test_each_contract_catches_a_forbidden_import(
    tmp_path: Path, importer: str, imported: str
) -> None:
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir(parents=True, exist_ok=True)
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "services" / "__init__.py").write_text("")
    assert run_contracts(tmp_path).returncode == 0  # the clean skeleton passes
    (tmp_path / importer / "bad.py").write_text(f"import {imported}\n")
    out = run_contracts(tmp_path)
    assert out.returncode != 0
    module = importer.replace("/", ".")
    assert f"{module}.bad -> {imported}" in out.stdout, out.stdout
