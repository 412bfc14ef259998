"""Generated datasets out: HDF5 or ImageFolder writers that stream, survive kill -9, resume exactly, and inspect."""
