"""What an operator runs the service with: metrics, health, configuration, seeding, backup.

Frontend-level (it reads every layer below it and serves none of the KMS API):

- :mod:`.metrics`: request counters kept in plain dicts on the hot path, turned
  into Prometheus metrics only when scraped;
- :mod:`.health`: liveness and readiness (store reachable, audit writable);
- :mod:`.endpoint`: ``/metrics``, ``/health`` and ``/ready``, on the HTTP
  endpoint and on an address of their own;
- :mod:`.config`: ``kms serve --config FILE`` (TOML), under the environment
  and the flags;
- :mod:`.notify`: ``sd_notify`` for systemd's ``Type=notify``.
"""
