"""Every TrainConfig field as a flag (``--batch-size`` for ``batch_size``), and the config a command line
means: a YAML ``--config`` gives the base values and flags override it."""

from __future__ import annotations

import argparse
import dataclasses

import yaml

from ..config import TrainConfig
from ..errors import TriceError


def parse_value(text: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "task_options":
            parser.add_argument("--task-option", action="append", default=None, metavar="KEY=VALUE",
                                dest="task_options", help="task option (repeatable), e.g. min_terms=2")
            continue
        if f.name == "reward":
            parser.add_argument("--reward", action="append", default=None, metavar="MODULE:FUNCTION",
                                dest="reward", help=f.metadata.get("help") + " (repeatable)")
            continue
        if f.type in (bool, "bool"):  # --fsdp / --no-fsdp
            parser.add_argument(flag, dest=f.name, default=None, action=argparse.BooleanOptionalAction,
                                help=f.metadata.get("help"))
            continue
        parser.add_argument(flag, dest=f.name, default=None, type=parse_value, help=f.metadata.get("help"))


def config_from_args(args, base: dict | None = None) -> TrainConfig:
    overrides = {}
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        if f.name == "task_options":
            options = {}
            for item in value:
                key, sep, raw = item.partition("=")
                if not sep or not key:
                    raise TriceError(f"--task-option expects KEY=VALUE, got {item!r}")
                options[key] = parse_value(raw)
            value = {**(base or {}).get("task_options", {}), **options}
        overrides[f.name] = value
    if args.config:
        return TrainConfig.from_yaml(args.config, **{**(base or {}), **overrides})
    return TrainConfig.from_dict({**(base or {}), **overrides})
