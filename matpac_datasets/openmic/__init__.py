"""TFDS builder package: see openmic_dataset_builder.py and README.md."""
