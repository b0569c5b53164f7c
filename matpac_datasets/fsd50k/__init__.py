"""TFDS builder package: see fsd50k_dataset_builder.py and README.md."""
