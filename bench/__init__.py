"""Benchmarks: they print and save numbers; tests never assert on speed."""
