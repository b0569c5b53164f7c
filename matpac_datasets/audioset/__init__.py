"""TFDS builder package: see audioset_dataset_builder.py and README.md."""
