"""Results layer: published tables, collection of run records, aggregation over seeds,
comparison with the published numbers and the generated report.

Pipeline (each step a pure function of its inputs, so every stage is idempotent)::

    papers/<p>/published.csv --load_published-------------------------------+
    RUNS_ROOT/<p>/{final,pinned}/*/record.json --collect--> per-seed rows   |
        --aggregate--> per-cell mean/std/min/max/n (+ group means) --compare--> status per cell
        --report--> results/<p>/{reproduced.csv, runs.csv, comparison.md, figures/*.png}

Modules: :mod:`.published`, :mod:`.collect`, :mod:`.aggregate`, :mod:`.compare`,
:mod:`.report`, :mod:`.figures`.  Nothing here imports torch: collect, aggregate and compare
run where the training stack is not installed (``tests/test_layers.py`` checks it).
"""
from .published import PublishedError, load_published  # noqa: F401
from .collect import CollectError, collect, collect_unfinished  # noqa: F401
from .aggregate import aggregate  # noqa: F401
from .compare import check_published, compare  # noqa: F401
from .report import write_report  # noqa: F401
