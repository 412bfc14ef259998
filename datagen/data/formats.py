"""What marks a datagen output, shared by its readers (datagen.data) and its writers (datagen.store); no torch here."""

OUTPUT_MARK = "format_version"  # the HDF5 attribute (and manifest key) every datagen output carries
OUTPUT_MANIFEST = "manifest.json"  # an ImageFolder output's record of what it holds
OUTPUT_RULE = "a datagen output: every image is train (generated data keeps no dev or test split)"
