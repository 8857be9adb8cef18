"""Durable embedded mode: Tansu's ``s3://`` storage on a disk-backed S3 emulator (s3rver, npm).

The in-memory broker loses everything on restart. With ``volstream up --durable`` the broker keeps
its log in an S3 bucket that s3rver stores under ``var/s3``, so a broker restart loses nothing.
s3rver is installed by ``make setup`` into ``tools/s3rver/node_modules`` (pinned in its lock file).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from devstack.broker import port_open
from services.common.errors import BrokerError
from services.common.settings import REPO_ROOT

S3RVER_BIN = REPO_ROOT / "tools" / "s3rver" / "node_modules" / ".bin" / "s3rver"
BUCKET = "tansu"
STORAGE_URL = f"s3://{BUCKET}/"


def s3rver_command(data_dir: Path, port: int) -> list[str]:
    """The s3rver command line serving ``data_dir`` on 127.0.0.1:port with the bucket ready."""
    if not S3RVER_BIN.exists():
        raise BrokerError(f"s3rver is not installed at {S3RVER_BIN}; run `make setup`")
    return [
        str(S3RVER_BIN),
        "-d",
        str(data_dir),
        "-a",
        "127.0.0.1",
        "-p",
        str(port),
        "--configure-bucket",
        BUCKET,
        "--allow-mismatched-signatures",
        "--silent",
    ]


def broker_env(port: int) -> dict[str, str]:
    """The environment that points Tansu's S3 storage engine at the local emulator."""
    return {
        "AWS_ENDPOINT": f"http://127.0.0.1:{port}",
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "S3RVER",
        "AWS_SECRET_ACCESS_KEY": "S3RVER",  # pragma: allowlist secret (s3rver fixed local cred)
        "AWS_DEFAULT_REGION": "us-east-1",
    }


@dataclass
class S3Emulator:
    """An s3rver process; ``start()`` returns once it accepts connections."""

    data_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 20) -> S3Emulator:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            s3rver_command(self.data_dir, self.port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if port_open("127.0.0.1", self.port):
                return self
            time.sleep(0.1)
        self.stop()
        raise BrokerError(f"s3rver did not listen on {self.port} within {timeout_s}s")

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
