"""The `datagen` command: one module per command group; each imports torch only inside its commands."""
