"""Feature tables (synthetic, HDF5, NumPy); the few-shot task that reads them is `optodsl.tasks.fewshot`."""

from .features import load_features as load_features, synthetic_features as synthetic_features
