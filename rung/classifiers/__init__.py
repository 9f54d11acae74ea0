"""Predicting which tier answers a prompt well, and grading answers to learn from."""
