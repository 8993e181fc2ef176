"""Figures: plain matplotlib functions (``plots``), the standard figures of a model (``model``) that the figure
callback and ``evaluate.py`` both draw, and TensorBoard's Projector files (``projector``)."""
