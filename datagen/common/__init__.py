"""What every layer uses: the error type, seed derivation, atomic files, the console and image grids."""
