"""``python -m services.ingestor``: live polling unless ``INGESTOR_MODE`` says otherwise."""

from __future__ import annotations

import sys

from services.common.settings import get_settings
from services.ingestor.app import serve
from services.ingestor.settings import IngestorSettings

if __name__ == "__main__":
    sys.exit(serve(get_settings(), IngestorSettings()))
