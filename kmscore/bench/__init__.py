"""``kms bench``: the benchmark harness users run on their own machines.

- :mod:`kmscore.bench.timing`: the loops, clocks, HDR histograms and CPU
  readings that ``kms bench`` and the developer scripts in ``bench/`` share;
- :mod:`kmscore.bench.operations`: the operations, mixes, keys and inputs;
- :mod:`kmscore.bench.targets`: library, socket, http and envelope targets,
  and the baselines run beside them;
- :mod:`kmscore.bench.runner`: interleaved rounds;
- :mod:`kmscore.bench.results`, :mod:`kmscore.bench.display`,
  :mod:`kmscore.bench.bill`: the figures, the JSON document, ``--compare``,
  ``--plot``, the tables and the AWS KMS bill;
- :mod:`kmscore.bench.cli`: the command (``kms bench``,
  ``python -m kmscore.bench``).

See docs/bench.md.
"""
