"""Repository hygiene: no secret is committed (detect-secrets over every tracked file).

A dependency vulnerability audit (pip-audit) needs the online advisory database, which this
machine cannot reach; the README says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from services.common.settings import REPO_ROOT


def _tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    # .dvc files hold md5 content digests of datasets, hex strings that are not secrets
    skip = ("uv.lock", "package-lock.json", "requirements.lock", ".dvc")
    return [
        f for f in out.stdout.splitlines() if not f.endswith(skip) and (REPO_ROOT / f).is_file()
    ]


def test_no_secrets_in_tracked_files() -> None:
    files = _tracked_files()
    assert files, "git ls-files found nothing"
    scan = subprocess.run(
        [str(Path(sys.executable).parent / "detect-secrets"), "scan", *files],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    findings = json.loads(scan.stdout)["results"]
    assert findings == {}, f"possible secrets committed: {json.dumps(findings, indent=1)}"
