"""The `datagen` command: parse, call the library, render with rich, map errors to exit codes.

Exit codes: 0 done, 1 a run that stopped on its own (NaN loss, a failed write, internal error) or an output that
`inspect` found incomplete or damaged, 2 bad input (including a run directory or output another process is
writing), 130 interrupted with Ctrl-C, 143 stopped by SIGTERM (both after saving what the command had done:
train's checkpoint, augment's whole batches; datagen.common.interrupts).
"""

from __future__ import annotations

import os
import sys

import typer

from datagen.cli import bench, evaluate, latent, output, train
from datagen.cli.common import one_line
from datagen.common.errors import DatagenError, WriteFailed
from datagen.common.interrupts import Interrupted, sigterm_raises

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
        with sigterm_raises():
            code = app(standalone_mode=False, prog_name="datagen")
    except DatagenError as exc:
        one_line("error:", str(exc))
        sys.exit(2)
    except WriteFailed as exc:  # disk full, file size limit, I/O error: the message names the file and the fix
        one_line("error:", str(exc))
        sys.exit(1)
    except typer.TyperException as exc:  # usage errors: unknown option, --epochs 0, missing argument
        one_line("error:", f"{exc.format_message()} (see datagen {' '.join(sys.argv[1:2])} --help)")
        sys.exit(2)
    except Interrupted as exc:  # a signal: the loop saved what it had (its message says so), or it came before
        one_line("interrupted:", str(exc))
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        one_line("aborted:", "interrupted before anything was saved")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - last resort: one line, not a traceback
        if os.environ.get("DATAGEN_DEBUG"):
            raise
        one_line("internal error:", f"{type(exc).__name__}: {exc} (set DATAGEN_DEBUG=1 for the traceback)")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
