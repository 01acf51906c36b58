"""The ``cosmos-cli`` Typer app: registers one function per verb and turns user errors into one line.

Verbs live in ``cosmos_cli.commands``; this module only wires them and owns the error boundary in
:func:`main`: a :class:`~cosmos_cli.errors.CosmosError` becomes one line on stderr and its exit code,
with the traceback only under ``--debug`` / ``COSMOS_CLI_DEBUG=1``.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cosmos_cli import __version__, settings
from cosmos_cli.commands import convert_checkpoint, doctor, download, extract_frames, generate, offload_profile, serve
from cosmos_cli.commands.options import DebugOpt
from cosmos_cli.errors import CosmosError, from_os_error

app = typer.Typer(
    name="cosmos-cli",
    help="Run NVIDIA Cosmos-1.0 autoregressive world models: download, extract frames, generate, serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cosmos-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Cosmos-1.0 autoregressive world models, practical to run."""


app.command("download")(download.command)
app.command("extract-frames")(extract_frames.command)
app.command("generate")(generate.command)
app.command("offload-profile")(offload_profile.command)
app.command("serve")(serve.command)
app.command("doctor")(doctor.command)
app.command("convert-checkpoint")(convert_checkpoint.command)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "generate" in args:
        args = generate.translate_nvidia_flags(args)
    settings.reset_debug()
    try:
        app(args=args, prog_name="cosmos-cli")  # standalone: usage errors print and exit 2 themselves
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except CosmosError as err:
        if settings.debug():
            raise
        from cosmos_cli.console import console

        console.print(f"[red]error:[/red] {err.one_line()}", highlight=False, soft_wrap=True)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # noqa: BLE001 - the boundary: anything unexpected is still one line
        if settings.debug():
            raise
        from cosmos_cli.console import console

        usage = from_os_error(err) if isinstance(err, OSError) else None  # a path the user chose (errors.py)
        if usage is not None:
            console.print(f"[red]error:[/red] {usage.one_line()}", highlight=False, soft_wrap=True)
            return usage.exit_code
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        console.print(
            f"[red]error:[/red] unexpected {type(err).__name__}: {message[:300]} "
            "(run again with --debug for the traceback, and report it if it persists)",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
