"""Benchmarks: they print and save numbers; tests never assert on speed.

``smokeclear bench`` (:func:`harness.run_bench`): :mod:`config` says what a run
measures, :mod:`variants` which backend x precision runs here and makes its
engines, :mod:`engine_view` and :mod:`graph_view` measure the two views,
:mod:`machine` and :mod:`stage_cpu` the machine and the cost, :mod:`papers` the
papers' figures from the registry; :mod:`report` and :mod:`plots` write the
markdown and the PNGs. ``smokeclear bench SUBCOMMAND`` runs one measurement:
:mod:`engine_speed`, :mod:`backends`, :mod:`model_stats`, :mod:`module_share`.
"""
