"""The stages that measure and choose models: evaluate (every variant on val), select (and the guard it
fits), test (the selected variant on the test split), report, and the model summary."""
