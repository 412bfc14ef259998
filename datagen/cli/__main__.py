"""`python -m datagen.cli`: the same as the `datagen` command."""

from datagen.cli.main import main

main()
