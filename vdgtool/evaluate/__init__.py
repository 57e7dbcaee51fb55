"""Evaluation: accuracy tables, predictions, few-shot episodes, result collection."""
