"""The engine: the Locust side of a run, which turns users into result records.

A sandbox's life is coded in ``lifecycle``; the process that runs many lives
is ``process``; exactly-once dispatch, the cluster barrier, the worker's
journal and the master's collector and coordinator each have their own
module; ``wiring`` connects all of it to Locust's events and messages.
"""
