"""``python -m services.validator``: the quality gate between ticks.raw and ticks.clean."""

from __future__ import annotations

import asyncio

from services.common import kafka
from services.common.logging import configure_logging
from services.common.metrics import serve_metrics
from services.common.settings import get_settings
from services.validator.app import Validator
from services.validator.metrics import ValidatorMetrics
from services.validator.settings import ValidatorSettings


def main() -> None:
    settings = get_settings()
    options = ValidatorSettings()
    configure_logging(settings.log_level, service="validator")
    serve_metrics(options.metrics_port)
    validator = Validator(settings, options, ValidatorMetrics())
    asyncio.run(kafka.run_until_stopped(validator.run))


if __name__ == "__main__":
    main()
