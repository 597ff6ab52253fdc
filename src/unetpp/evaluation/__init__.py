"""Measuring models: metrics, the evaluate and select stages, cost profiling, the summary, plots."""
