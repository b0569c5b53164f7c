"""TFDS builder package: see urbansound8k_dataset_builder.py and README.md."""
