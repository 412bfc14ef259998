"""Generated datasets out and back: HDF5, ImageFolder or WebDataset writers that stream, survive kill -9, resume exactly and inspect, and SyntheticDataset."""
