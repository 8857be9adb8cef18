"""Loaded at start-up by child processes of a census run (see :mod:`bench.census`)."""

from bench.census import install

install()
