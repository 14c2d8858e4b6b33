"""The research layer: the papers as data, runs, sweeps, tuning, claims and formulas.

- :mod:`~inrlib.research.papers`: the papers' titles, printed configurations (Tables 2-4) and values.
- :mod:`~inrlib.research.experiments`: :class:`RunConfig`, one training run with NTK snapshots.
- :mod:`~inrlib.research.sweep`: resumable sweeps over independent runs, on any executor.
- :mod:`~inrlib.research.tuning`: Optuna searches in an RDB storage.
- :mod:`~inrlib.research.claims`: claim records and their verdicts.
- :mod:`~inrlib.research.theory`: closed forms the chapters check the engines against.
"""
