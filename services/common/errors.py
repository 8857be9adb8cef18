"""The root of volstream's exceptions.

The tree::

    VolstreamError
    ├── ConfigError          a setting is missing or wrong (e.g. no API key in live mode)
    ├── BrokerError          the broker is unreachable or refused an operation
    ├── SchemaError          a payload does not match its message schema (also a ValueError)
    ├── ModelError           no model, or a model that cannot be loaded or used
    │   ├── FeatureVersionMismatch   a vector built by another feature set than the model's
    │   └── ModelIntegrityError      a version whose artifact is not a volstream booster or does
    │                                not match its registered SHA-256 (refused, never loaded)
    └── UpstreamError        an outside API failed (see services.ingestor for its subtypes)

A bad *message* never raises out of a stage: it becomes a dead letter with a reason. These errors
are for infrastructure and programming faults, where the supervisor restarts the service.
"""

from __future__ import annotations


class VolstreamError(Exception):
    """Root of every volstream error."""


class ConfigError(VolstreamError):
    """A setting is missing or invalid."""


class BrokerError(VolstreamError):
    """The broker is unreachable or refused an operation."""


class SchemaError(VolstreamError, ValueError):
    """A payload does not match its schema; ``str()`` is a readable, field-level message."""


class ModelError(VolstreamError):
    """No usable model."""


class FeatureVersionMismatch(ModelError):
    """A feature vector's ``feature_version`` differs from the model's."""


class ModelIntegrityError(ModelError):
    """A model version's artifact is not what was registered (format or hash); never loaded."""


class UpstreamError(VolstreamError):
    """An outside API failed."""
