"""MathPal Train's own library: what the ``mathpal`` commands call besides ``dataprep`` and ``evals``.

Training itself is Axolotl's; this package checks recipes, builds the ``accelerate launch``
command, builds the tiny Gemma-3n for CPU runs, and holds the concepts every stage shares
(the Vietnamese answer notation, atomic output, CometML). ``mathpal_commands.demo`` is the
sample corpus and the demo run. docs/architecture.md maps each stage to its module.
"""
