"""Watching the served model: the request log against its training reference (drift), and what to label."""
