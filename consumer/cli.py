"""The `kafka-twilio` command: one entry point, one sub-command per job.

Each sub-command lives in the module of the stage it belongs to and is imported only when used, so
`kafka-twilio validate` does not pay for the Kafka client or the HTTP stack.
"""

from __future__ import annotations

import importlib
import sys

from consumer import __version__

# name -> ("module:function", one-line help); each function takes argv without the name, returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("consumer.service.main:main", "consume events and send Twilio messages (the service)"),
    "webhooks": (
        "consumer.webhooks.main:main",
        "receive Twilio status callbacks and replies; produce status events to Kafka",
    ),
    "validate": (
        "consumer.commands.preview:validate_main",
        "check mapping files; report every problem at once",
    ),
    "preview": (
        "consumer.commands.preview:preview_main",
        "show which mappings fire for events and the exact requests",
    ),
    "produce": (
        "consumer.commands.produce:main",
        "encode Segment-shaped JSON lines as Avro and produce them to a topic",
    ),
    "simulator": (
        "consumer.simulator:main",
        "run the local Twilio simulator (validates against the OpenAPI spec)",
    ),
    "import-segment": (
        "consumer.commands.import_segment:main",
        "write a mapping file from a Segment Twilio Messaging destination's subscriptions",
    ),
    "replay": ("consumer.commands.replay:main", "re-publish dead-lettered records to their source topic"),
    "demo": (
        "consumer.commands.demo:main",
        "run the whole path locally on sample events and print a summary",
    ),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"kafka-twilio {__version__}", "", "usage: kafka-twilio COMMAND [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `kafka-twilio COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0
    if args[0] == "--version":
        print(__version__)
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"kafka-twilio: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, func_name = COMMANDS[name][0].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    code: int = func(rest)
    return code


if __name__ == "__main__":
    sys.exit(main())
