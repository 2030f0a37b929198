"""EMO annotator: raw talking-head videos to WebDataset shards."""
__version__ = "0.1.0"
