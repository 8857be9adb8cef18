"""Local tooling, never deployed.

The ``volstream`` CLI host, the local stack (supervisor, demo), the embedded broker, durable mode,
the local MLflow server, the process-group helper and the CryptoCompare emulator. Nothing in
``services`` or ``trainer`` imports it.
"""
