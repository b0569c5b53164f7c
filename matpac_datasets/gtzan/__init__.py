"""TFDS builder package: see gtzan_dataset_builder.py and README.md."""
