"""Kafka consumer-group lag exporter: ``python -m services.lag_exporter`` (port 9104).

Exports ``kafka_consumergroup_lag{group,topic,partition}``: the messages between each group's
committed offset and the true end of the partition.
"""
