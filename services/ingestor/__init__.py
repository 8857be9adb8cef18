"""The ingestor: CryptoCompare minute candles (live, backfill) or recorded history (replay) into
``ticks.raw`` as RawBatch messages keyed by symbol.

- ``python -m services.ingestor``: live polling with the environment's settings
  (``INGESTOR_MODE``, ``SYMBOLS``, ``INGESTOR_POLL_INTERVAL_S``,
  ``INGESTOR_CRYPTOCOMPARE_BASE_URL``, ``INGESTOR_CRYPTOCOMPARE_API_KEY``...);
- ``volstream ingest live|backfill --days N|replay --file PATH --speed X|max``;
- ``python -m devstack.emulator`` / ``volstream emulator``: a local CryptoCompare with
  real recorded data, a simulated clock and injectable faults.

Modules: ``core`` (pure logic), ``client`` (HTTP + retries), ``app`` (polling, publishing,
replay), ``checkpoint`` and ``recover`` (no gap, no repeat across restarts), ``replay`` (file
sources and pacing), ``emulator``/``emulator_core``, ``errors``, ``metrics``, ``settings``.
"""
