"""The lake archiver: ``python -m services.archiver`` writes ``ticks.clean`` to the Parquet lake.

A consumer-group service beside the featurizer; the lake itself
(:mod:`services.common.lake`) is shared with the trainer and the batch feature path.
"""
