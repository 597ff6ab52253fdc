"""The plan stage: a fingerprint of the prepared data and the training recipe derived from it, each
value with the rule that produced it (as nnU-Net's experiment planning does)."""
