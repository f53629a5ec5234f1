"""Command lines from config dataclasses: one flag per field, named presets, saved as JSON.

Resolution order: dataclass defaults < ``--config FILE.json`` (a saved ``config.json``) <
``--preset NAME`` < flags given explicitly on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def knob(default: Any, help: str, **kwargs: Any) -> Any:  # noqa: A002 - mirrors argparse
    """A dataclass field with its command-line help text."""
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default),
                                 metadata={"help": help, **kwargs})
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config_to_dict(cfg), indent=2, sort_keys=True) + "\n")
    return path


def build_parser(cls: type, presets: dict[str, dict[str, Any]] | None = None,
                 description: str = "") -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with ``--kebab-case`` flags for every field of dataclass ``cls``."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", dest="_config_file", metavar="FILE.json",
                        help="start from a saved config.json (flags still override it)")
    if presets:
        parser.add_argument("--preset", dest="_preset", metavar="NAME",
                            help=f"named preset, one of: {', '.join(sorted(presets))}")
    defaults = cls()
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        base, optional = _unwrap_optional(hints[field.name])
        default = getattr(defaults, field.name)
        help_text = f"{field.metadata.get('help', '')} (default: {default!r})"
        kwargs: dict[str, Any] = {"dest": field.name, "help": help_text}
        if "choices" in field.metadata:
            kwargs["choices"] = field.metadata["choices"]
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif typing.get_origin(base) in (list, tuple):
            (item,) = set(typing.get_args(base)) - {Ellipsis}
            parser.add_argument(flag, nargs="*", type=item, **kwargs)
        else:
            parser.add_argument(flag, type=_none_or(base) if optional else base, **kwargs)
    return parser


def parse_config(cls: type[T], argv: list[str] | None = None,
                 presets: dict[str, dict[str, Any]] | None = None, *,
                 default_preset: str | None = None, description: str = "") -> T:
    """Parse ``argv`` into an instance of dataclass ``cls`` (see module docstring for order)."""
    parser = build_parser(cls, presets, description)
    args = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    config_file = args.pop("_config_file", None)
    if config_file is not None:
        values.update(_known_fields(cls, json.loads(Path(config_file).read_text()), config_file))
    preset_name = args.pop("_preset", default_preset)
    if preset_name is not None:
        values.update(resolve_preset(presets or {}, preset_name, cls))
    values.update(args)
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        if isinstance(value, list) and typing.get_origin(_unwrap_optional(hints[name])[0]) is tuple:
            values[name] = tuple(value)
    return cls(**values)


def resolve_preset(presets: dict[str, dict[str, Any]], name: str, cls: type) -> dict[str, Any]:
    """The overrides of preset ``name``; unknown names list the valid ones."""
    if name not in presets:
        raise KeyError(f"unknown preset={name!r}; valid presets: {', '.join(sorted(presets))}")
    return _known_fields(cls, presets[name], f"preset {name!r}")


def _known_fields(cls: type, values: dict[str, Any], source: str) -> dict[str, Any]:
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise KeyError(f"{source} sets unknown config field(s): {', '.join(unknown)}")
    return dict(values)


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _none_or(kind: type):
    def convert(text: str):
        return None if text.lower() in ("none", "null") else kind(text)

    convert.__name__ = kind.__name__
    return convert
