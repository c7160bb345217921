"""The demo fixture: a generated sample corpus loaded into Qdrant as messy pipeline points.

Kept apart from the export pipeline (``dataprep``), which must work on real crawls; the
demo, the tests and the benchmarks use this corpus because its solutions are computed,
hence correct by construction.
"""
