"""TFDS builder package: see nsynth_dataset_builder.py and README.md."""
