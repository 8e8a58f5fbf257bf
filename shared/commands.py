"""Every service's command line (`python -m services.X`), built one way.

`serve` (the default) reads the settings, refusing bad ones with exit code 2
and the failing variables (in production also unsafe ones, `shared.production`),
then runs the app. `new-api-key SOURCE` makes a
key for a calling system where the service has API keys. A service adds its
own commands: a `Command` runs with the settings loaded, an `OfflineCommand`
(printing a secret, say) needs none. Every command has `--help`.
"""

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from fastapi import FastAPI
from pydantic import ValidationError

from shared.api_keys import new_api_key
from shared.http import configure_logging, serve
from shared.production import exit_if_unsafe
from shared.settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)
AddArguments = Callable[[argparse.ArgumentParser], None]
Main = Callable[[Sequence[str] | None], int]


def _no_arguments(_: argparse.ArgumentParser) -> None:
    return


@dataclass(frozen=True, slots=True)
class Command(Generic[S]):
    """A command that runs with the service's settings read and logging configured."""

    name: str
    help: str
    run: Callable[[argparse.Namespace, S], int]
    arguments: AddArguments = _no_arguments
    # What production mode checks before this command runs (default: the settings' own list).
    production_problems: Callable[[S], list[str]] | None = None


@dataclass(frozen=True, slots=True)
class OfflineCommand:
    """A command that needs no settings: it makes and prints something."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    arguments: AddArguments = _no_arguments


@dataclass(frozen=True, slots=True)
class ApiKeys:
    """Where the service has API keys: the variable that holds their hashes, and who calls."""

    variable: str
    caller: str
    example: str
    # Where the service also has read-only keys: `new-api-key --read-only` prints for it.
    read_only_variable: str | None = None


def service_main(
    *,
    service: str,
    description: str,
    settings: Callable[[], S],
    app: str,
    api_keys: ApiKeys | None = None,
    commands: Sequence[Command[S]] = (),
    offline: Sequence[OfflineCommand] = (),
) -> Main:
    """The service's `main(argv)`; `app` names its factory as `module:function`.

    The app module is imported only when the service is served, so making a
    key does not load the whole service.
    """

    def serve_app(_: argparse.Namespace, loaded: S) -> int:
        module, _separator, function = app.partition(":")
        create_app = cast(
            Callable[[S], FastAPI], getattr(importlib.import_module(module), function)
        )
        serve(create_app(loaded), loaded)
        return 0

    with_settings: list[Command[S]] = [
        Command("serve", "run the service (the default)", serve_app),
        *commands,
    ]
    without_settings = list(offline)
    if api_keys is not None:
        without_settings.insert(0, _new_api_key_command(api_keys))

    def main(argv: Sequence[str] | None = None) -> int:
        parser = argparse.ArgumentParser(
            prog=f"python -m services.{service}", description=description
        )
        subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
        every: list[Command[S] | OfflineCommand] = [*with_settings, *without_settings]
        for command in every:
            # The one-line help of the list, as a sentence, heads the command's own --help.
            sentence = f"{command.help[:1].upper()}{command.help[1:]}."
            command.arguments(
                subcommands.add_parser(command.name, help=command.help, description=sentence)
            )
        args = parser.parse_args(argv)
        name = args.command or "serve"
        for offline_command in without_settings:
            if offline_command.name == name:
                return offline_command.run(args)
        try:
            loaded = settings()
        except ValidationError as error:
            print(f"{service}: invalid settings:\n{error}", file=sys.stderr)
            return 2
        [chosen] = [command for command in with_settings if command.name == name]
        check = chosen.production_problems
        who = service if name == "serve" else f"{service} {name}"
        exit_if_unsafe(loaded, who, check(loaded) if check is not None else None)
        configure_logging(loaded.log_level)
        return chosen.run(args, loaded)

    return main


def _new_api_key_command(keys: ApiKeys) -> OfflineCommand:
    def add_source(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("source", help=f"the system's name, e.g. {keys.example}")
        if keys.read_only_variable is not None:
            parser.add_argument(
                "--read-only",
                action="store_true",
                help=f"a key that may only read (its hash goes in {keys.read_only_variable})",
            )

    def make_key(args: argparse.Namespace) -> int:
        read_only = getattr(args, "read_only", False)
        variable = keys.read_only_variable if read_only else keys.variable
        print(new_api_key(args.source, variable or keys.variable))
        return 0

    return OfflineCommand(
        "new-api-key",
        f"make an API key for {keys.caller} and print its hash",
        make_key,
        add_source,
    )
