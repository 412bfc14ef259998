"""Images in: bundled, torchvision, ImageFolder and HDF5 sources, conformed to a recipe's size and channels, with fixed splits."""
