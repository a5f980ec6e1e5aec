"""Generative distillation (task kind ``generate.v1``)."""
