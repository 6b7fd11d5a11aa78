"""Transformer Playground's engine: models, tasks, the training loop, sampling, checkpoints, figures.

Nothing here imports gradio; the page (app.py), the command line (python -m core) and the
tests all call these same functions.
"""
