"""The team's stack: PostgreSQL, an MLflow tracking server on it with an artifact store, a Prefect server.

Optional: with nothing configured the pipeline keeps its embedded default (MLflow on SQLite in the
project, Prefect's per-process server, a file lock for promotion). `unetpp stack up` starts the three
servers on loopback, keeps their data under `.stack/` between runs, and prints the two variables that
point the pipeline at them.
"""
