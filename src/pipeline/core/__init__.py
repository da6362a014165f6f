"""The ML core: data, nets, engines, statistics and plots. It imports neither MLflow nor Hydra."""
