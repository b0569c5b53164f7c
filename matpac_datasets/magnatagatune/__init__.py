"""TFDS builder package: see magnatagatune_dataset_builder.py and README.md."""
