"""The featurizer's own knobs (environment variables); shared ones are in ``services.common``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from services.common.settings import component_config


class FeaturizerSettings(BaseSettings):
    """Settings of the streaming featurizer. Frozen: read once."""

    model_config = component_config("FEATURIZER_")

    metrics_port: int = Field(default=9103, ge=0)
    """``FEATURIZER_METRICS_PORT``: Prometheus endpoint (0 disables it, as tests do)."""
    app_id: str = "volstream-featurizer"
    """``FEATURIZER_APP_ID``: the Faust app id, hence the consumer group every worker joins."""
    web_port: int = Field(default=6066, ge=0)
    """``FEATURIZER_WEB_PORT``: Faust's web server; give each worker its own, 0 disables it."""
    worker_id: str = "0"
    """``FEATURIZER_WORKER_ID``: names this worker in logs and in its Kafka client id."""
    batch_size: int = Field(default=2000, ge=1)
    """``FEATURIZER_BATCH_SIZE``: most candles per micro-batch (:mod:`.batching`)."""
    batch_linger_s: float = Field(default=0.0, ge=0)
    """``FEATURIZER_BATCH_LINGER_S``: a micro-batch is handed out once no candle arrived for
    this long. 0 (the default): as soon as the agent is free, with whatever the consumer handed
    over meanwhile; live, a candle then waits for no timer (a 3 ms linger cost the single-candle
    hop about 4 ms at p50), and under a backlog each handover already carries a fetch's worth of
    candles, so batches still fill up (1,878 candles on average over the 30-day bench, against
    1,800 with 3 ms) and amortise the kernel's per-call cost."""
    batch_busy_rate: float = Field(default=1000.0, gt=0)
    """``FEATURIZER_BATCH_BUSY_RATE``: candles per second (the candles handed to the agent in
    the last 0.1 s, ``batching.RATE_WINDOW_S``) from which the next batch lingers
    ``FEATURIZER_BATCH_BUSY_LINGER_S`` instead. Live (100 candles/s, or a minute's burst of
    every symbol) stays far below it."""
    batch_busy_linger_s: float = Field(default=0.02, ge=0)
    """``FEATURIZER_BATCH_BUSY_LINGER_S``: the linger while busy. In a replay, linger 0 cut
    batches of a few dozen candles, each paying the kernel's ~0.8 ms per call, Faust's handover
    and a produce request; this lets them grow to the window."""
    batch_within_s: float = Field(default=0.2, gt=0)
    """``FEATURIZER_BATCH_WITHIN_S``: longest time a micro-batch stays open after its first
    candle, when candles keep trickling in faster than the linger."""
    fetch_max_records: int = Field(default=8000, ge=1)
    """``FEATURIZER_FETCH_MAX_RECORDS``: most records one handover from Faust's consumer thread
    carries (``max_poll_records``). Large, so each fetch crosses the thread boundary in few
    trips and the thread fetches the next one while the agent computes."""
    fetch_max_wait_ms: int = Field(default=5, ge=0)
    """``FEATURIZER_FETCH_MAX_WAIT_MS``: Faust's consumer fetch wait (Faust hard-codes 1500)."""
    session_timeout_s: float = Field(default=10.0, ge=6.0)
    """``FEATURIZER_SESSION_TIMEOUT_S``: group session timeout (Tansu joins take half of it)."""
