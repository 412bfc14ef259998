"""What marks a datagen output, shared by its readers (datagen.data) and its writers (datagen.store); no torch here."""

import json
from pathlib import Path

OUTPUT_MARK = "format_version"  # the HDF5 attribute (and manifest key) every datagen output carries
OUTPUT_MANIFEST = "manifest.json"  # an ImageFolder output's record of what it holds
OUTPUT_RULE = "a datagen output: every image is train (generated data keeps no dev or test split)"
INCOMPLETE = "incomplete (an interrupted write); finish it with `datagen augment --resume` or regenerate it"


def read_output_manifest(root: Path) -> dict | None:
    """A directory output's manifest.json, if `root` holds one that datagen wrote (it carries OUTPUT_MARK)."""
    try:
        manifest = json.loads((Path(root) / OUTPUT_MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and OUTPUT_MARK in manifest else None


def output_format(root: Path) -> str | None:
    """The --format a directory output was written with; None where `root` holds no datagen output."""
    manifest = read_output_manifest(root)
    return None if manifest is None else manifest.get("format", "imagefolder")
