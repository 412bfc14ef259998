"""The `datagen` command: parse, call the library, render with rich, map errors to exit codes.

Exit codes: 0 done, 1 a run that stopped on its own (NaN loss, internal error) or an output that
`inspect` found incomplete or damaged, 2 bad input, 130 interrupted with Ctrl-C (after saving a
checkpoint).
"""

from __future__ import annotations

import os
import sys

import typer

from datagen.cli import bench, evaluate, latent, output, train
from datagen.cli.common import one_line
from datagen.common.errors import DatagenError

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Grow a small labeled image set into a larger, faithfully labeled one with SelfExGAN.")
for group in (train, output, evaluate, bench, latent):
    group.register(app)


def main() -> None:
    """Entry point: one line on stderr and exit 2 for bad input, never a traceback."""
    if len(sys.argv) == 1:
        sys.argv.append("--help")  # bare `datagen`: the help, not a usage error
    try:
        # One name however it was launched: Click would take `python -m datagen` from the launcher, and the shell
        # completion hooks (`--install-completion`, `--show-completion`) and their _DATAGEN_COMPLETE come from it.
        code = app(standalone_mode=False, prog_name="datagen")
    except DatagenError as exc:
        one_line("error:", str(exc))
        sys.exit(2)
    except typer.TyperException as exc:  # usage errors: unknown option, --epochs 0, missing argument
        one_line("error:", f"{exc.format_message()} (see datagen {' '.join(sys.argv[1:2])} --help)")
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        one_line("aborted:", "interrupted before anything was saved")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - last resort: one line, not a traceback
        if os.environ.get("DATAGEN_DEBUG"):
            raise
        one_line("internal error:", f"{type(exc).__name__}: {exc} (set DATAGEN_DEBUG=1 for the traceback)")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
