"""volstream's monitoring: rules, alerts, dashboards and the tools around them.

- :mod:`monitoring.alerts` defines the recording rules, the alerts and their thresholds (once);
  :mod:`monitoring.targets` the scrape jobs; :mod:`monitoring.panels` the dashboard panels.
- :mod:`monitoring.generate` renders the Prometheus rules and configs and the Grafana dashboards.
- :mod:`services.lag_exporter` exports Kafka consumer-group lag; :mod:`monitoring.webhook_sink`
  records Alertmanager's notifications; :mod:`monitoring.report` is ``volstream report``.
- :mod:`devstack.monitoring_stack` runs Prometheus, Alertmanager and the sink on free ports (tests).

See ``docs/monitoring.md``.
"""
