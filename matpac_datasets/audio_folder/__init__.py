"""TFDS builder package: see audio_folder_dataset_builder.py and README.md."""
