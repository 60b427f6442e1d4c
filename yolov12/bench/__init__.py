"""The end-to-end latency suite behind ``python -m yolov12 bench``: timing and records
(``records``), the experiments (``e2e``: baselines, ablations, batch sweep; ``ablations``: the model
variants), the paper-layout tables (``tables``), the latency-vs-params plot (``plot``) and the
command line (``cli``). The kernel benchmarks (``benchmarks/bench_*.py``) use ``records`` too.
Method and record format: docs/benchmarks.md.
"""
