"""Benchmarks for the gateway; `python -m bench` (or `make bench`) runs them.

The routing benchmark (bench/routing.py) compares the routing policies against an oracle,
in a discrete-event model (bench/des.py) and through real processes (bench/live.py).
"""
