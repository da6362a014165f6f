"""The reference pipeline for small neural networks: DVC stages, Hydra configs, Keras models, MLflow runs."""

import os

# Must be set before TensorFlow is first imported, or every command prints CUDA and oneDNN noise;
# oneDNN off also keeps CPU results bitwise reproducible.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
