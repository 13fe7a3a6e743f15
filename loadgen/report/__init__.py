"""Where figures are computed and shown: pure statistics over records, charts,
HTML and Markdown pages, run comparison and shard aggregation.

Nothing here talks to a provider or to Locust; every function reads records
(or a run directory) and returns figures or files.
"""
