"""TFDS builder package: see spoken_digit_dataset_builder.py and README.md."""
