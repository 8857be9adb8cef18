"""External tools a test needs: skipped with the install command on a laptop, a failure in CI.

When ``CI`` is set, a missing tool is an error, so a green CI run can never be a run that quietly
skipped the rule tests or the live Prometheus checks.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

#: How to install each tool (the repo's make targets wrap the system packages).
INSTALL = {
    "promtool": "sudo apt-get install -y prometheus (or `make monitoring-setup`)",
    "amtool": "sudo apt-get install -y prometheus-alertmanager (or `make monitoring-setup`)",
    "prometheus": "sudo apt-get install -y prometheus (or `make monitoring-setup`)",
    "prometheus-alertmanager": "sudo apt-get install -y prometheus-alertmanager"
    " (or `make monitoring-setup`)",
    "node": "sudo apt-get install -y nodejs npm, then `make setup` (installs s3rver)",
    "airflow": "make airflow-setup",
}


def require_tool(name: str, path: Path | None = None) -> str:
    """The tool's path; a skip (or, when ``CI`` is set, a failure) naming the install command."""
    found = shutil.which(name) if path is None else (str(path) if path.exists() else None)
    if found:
        return found
    message = f"{name} not found: install it with {INSTALL[name]}"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and {message}", pytrace=False)
    pytest.skip(message)


def require_daemons() -> None:
    """Prometheus and Alertmanager, for the live monitoring tests."""
    require_tool("prometheus")
    require_tool("prometheus-alertmanager")
