"""TFDS builder package: see esc50_dataset_builder.py and README.md."""
