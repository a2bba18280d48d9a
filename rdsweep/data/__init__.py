"""Data: the dataset registry (datasets.py, no torch: names, kinds, shapes) and the loaders (loaders.py)."""
