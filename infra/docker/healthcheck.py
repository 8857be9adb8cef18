"""Container healthcheck: exit 0 when the service answers HTTP 200, else 1.

Stdlib only (it runs inside the image, with no shell). The URL is ``HEALTHCHECK_URL``, else the
Prometheus endpoint ``http://127.0.0.1:$<COMPONENT>_METRICS_PORT/metrics`` that every stream
service serves (one container runs one component, so one such variable is set).
"""

from __future__ import annotations

import os
import sys
import urllib.request


def target() -> str | None:
    """The URL to probe, or None when the service exposes nothing to probe."""
    url = os.environ.get("HEALTHCHECK_URL", "").strip()
    if url:
        return url
    ports = [v.strip() for k, v in sorted(os.environ.items()) if k.endswith("_METRICS_PORT")]
    port = next((p for p in ports if p), "")
    return f"http://127.0.0.1:{port}/metrics" if port and port != "0" else None


def main() -> int:
    url = target()
    if url is None:
        return 0
    try:
        with urllib.request.urlopen(url, timeout=4) as resp:
            return 0 if resp.status == 200 else 1
    except OSError as exc:
        print(f"healthcheck {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
