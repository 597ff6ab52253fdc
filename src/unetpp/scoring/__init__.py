"""What every phase scores with: per-case metrics of a served model, intervals and paired differences,
cost (FLOPs, latency), risk-coverage and conformal calibration, and the figures drawn from them."""
