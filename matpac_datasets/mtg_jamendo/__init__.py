"""TFDS builder package: see mtg_jamendo_dataset_builder.py and README.md."""
