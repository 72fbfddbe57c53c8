"""Scorers (MLflow no-code, user scoring script), file readers and output writers."""
