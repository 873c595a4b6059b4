"""Experiments: training, evaluation and reports put together (reproduce, sweep)."""
