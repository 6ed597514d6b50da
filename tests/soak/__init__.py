"""Randomized fault soak (issue 16): ``python -m tests.soak.soak --seed N --duration S``.

See ``soak.py`` for the driver, ``checker.py`` for the classification of every
acknowledged job, and docs/explanation/reliability.md ("Randomized soak") for its figures.
"""
