"""Benchmarks for duewise (not timed tests): `python -m bench.invoice_bench` (`make bench`)."""
