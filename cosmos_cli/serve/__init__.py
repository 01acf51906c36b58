"""`cosmos-cli serve`: an HTTP API over the same :class:`~cosmos_cli.pipeline.pipeline.VideoPipeline` that
`generate` runs, kept warm in one process.

``jobs`` persists every accepted request (SQLite + files under the jobs dir), ``uploads`` streams and
validates what clients send, ``worker`` is the one thread that runs the pipeline, ``auth`` checks the
bearer key and ``app`` wires them into FastAPI routes.
"""
