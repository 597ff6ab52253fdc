"""Prefect flows: thin composition over the DVC stages and the `unetpp` library."""
