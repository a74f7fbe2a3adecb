"""Metrics: judges (small models trained on generator ground truth, used only to score outputs)."""
