"""``volstream data``: real minute candles from public archives (see docs/data.md)."""
