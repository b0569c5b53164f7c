"""MATPAC and MATPAC++ in Keras 3: models, conversion of official checkpoints, embeddings."""

__version__ = "0.1.0"
