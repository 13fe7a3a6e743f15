"""`loadgen watch`: how runs are going, from wherever their copies are.

``sources`` reads a run's identity, heartbeat and final meta.json from a run
directory, Postgres or object storage; ``status`` turns that into the
figures and the verdict a watcher needs (pure); ``command`` is the CLI that
refreshes them in place and ends when every run is over.
"""
