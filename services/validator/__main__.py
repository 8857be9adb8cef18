"""``python -m services.validator``: the quality gate between ticks.raw and ticks.clean.

The loop runs on uvloop, as the predictor's does: at 100 single candles/s the validator's own
work per poll is small and the event loop's overhead around each fetch and send is a good part
of its CPU.
"""

from __future__ import annotations

import uvloop

from services.common import kafka
from services.common.logging import configure_logging
from services.common.metrics import serve_metrics
from services.common.runtime import tune_gc
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
    tune_gc()
    uvloop.run(kafka.run_until_stopped(validator.run))


if __name__ == "__main__":
    main()
