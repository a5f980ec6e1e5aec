"""Serving: the trained student at work (predicting files of texts)."""
