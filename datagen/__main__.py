"""`python -m datagen` (and `torchrun -m datagen`): the same as the `datagen` command."""

from datagen.cli.main import main

main()
