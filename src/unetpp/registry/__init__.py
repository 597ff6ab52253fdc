"""MLflow: run tracking shared by the stages, and the model registry with its promotion gate."""
