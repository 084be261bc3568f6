"""Rolling tasks → train: RollingGen, strategies, processors, LightGBM training and the MLflow registry."""
