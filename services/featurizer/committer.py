"""Moved to :mod:`services.common.committer` (the predictor uses it too); this import path stays."""

from services.common.committer import CommitFn, Committer

__all__ = ["CommitFn", "Committer"]
