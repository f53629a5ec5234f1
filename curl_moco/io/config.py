"""Command lines from config dataclasses: one flag per field, named presets, saved as JSON.

Resolution order: dataclass defaults < ``--config FILE.json`` (a saved ``config.json``) <
``--preset NAME`` < flags given explicitly on the command line; the entry point's default preset
applies only without ``--config``. A bad flag, preset or config file
raises :class:`~curl_moco.io.errors.UsageError` naming it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from curl_moco.io.atomic import atomic_write
from curl_moco.io.errors import ArgumentParser, MissingPathError, UnknownNameError, UsageError

T = TypeVar("T")


def knob(default: Any, help: str, **kwargs: Any) -> Any:  # noqa: A002 - mirrors argparse
    """A dataclass field with its command-line help text. ``flag="name"`` gives the flag a
    name other than the field's (``--name``); ``aliases=("old-name", ...)`` keeps older flag
    names working (the config field, and so ``config.json``, keeps the field's name)."""
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default),
                                 metadata={"help": help, **kwargs})
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | os.PathLike) -> Path:
    """Write ``cfg`` as JSON to ``path`` (atomically: never a partial file)."""
    return atomic_write(path, json.dumps(config_to_dict(cfg), indent=2, sort_keys=True) + "\n")


def build_parser(cls: type, presets: dict[str, dict[str, Any]] | None = None,
                 description: str = "") -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with ``--kebab-case`` flags for every field of dataclass ``cls``."""
    parser = ArgumentParser(
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
        flag = "--" + field.metadata.get("flag", field.name.replace("_", "-"))
        aliases = ["--" + alias for alias in field.metadata.get("aliases", ())]
        base, optional = _unwrap_optional(hints[field.name])
        default = getattr(defaults, field.name)
        # argparse %-formats help texts: a literal "%" (e.g. "60 %") must be doubled
        help_text = f"{field.metadata.get('help', '')} (default: {default!r})".replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": field.name, "help": help_text}
        if "choices" in field.metadata:
            kwargs["choices"] = field.metadata["choices"]
        if base is bool:
            parser.add_argument(flag, *aliases, action=argparse.BooleanOptionalAction, **kwargs)
        elif typing.get_origin(base) in (list, tuple):
            (item,) = set(typing.get_args(base)) - {Ellipsis}
            parser.add_argument(flag, *aliases, nargs="*", type=item, **kwargs)
        else:
            parser.add_argument(flag, *aliases, type=_none_or(base) if optional else base,
                                **kwargs)
    return parser


def parse_config(cls: type[T], argv: list[str] | None = None,
                 presets: dict[str, dict[str, Any]] | None = None, *,
                 default_preset: str | None = None, description: str = "",
                 check_overrides: Callable[[str, dict[str, Any], dict[str, Any]], None]
                 | None = None) -> T:
    """Parse ``argv`` into an instance of dataclass ``cls`` (see module docstring for order).

    ``check_overrides(source, values, flags)``, if given, sees the values of the config file
    (``source`` = ``"config='path'"``) and of the preset (``"preset='name'"``) with the flags
    given explicitly, and raises :class:`UsageError` for a flag that contradicts them."""
    parser = build_parser(cls, presets, description)
    args = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    config_file = args.pop("_config_file", None)
    # A config file is a complete configuration: the default preset does not apply over it.
    preset_name = args.pop("_preset", None if config_file is not None else default_preset)
    if config_file is not None:
        values.update(read_config_file(cls, config_file))
        if check_overrides is not None:
            check_overrides(f"config={str(config_file)!r}", values, args)
    if preset_name is not None:
        preset = resolve_preset(presets or {}, preset_name, cls)
        if check_overrides is not None:
            check_overrides(f"preset={preset_name!r}", preset, args)
        values.update(preset)
    values.update(args)
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        if isinstance(value, list) and typing.get_origin(_unwrap_optional(hints[name])[0]) is tuple:
            values[name] = tuple(value)
    return cls(**values)


def resolve_preset(presets: dict[str, dict[str, Any]], name: str, cls: type) -> dict[str, Any]:
    """The overrides of preset ``name``; unknown names list the valid ones."""
    if name not in presets:
        raise UnknownNameError(
            f"unknown preset={name!r}; valid presets: {', '.join(sorted(presets))}")
    return _known_fields(cls, presets[name], f"preset {name!r}")


def read_config_file(cls: type, path: str | os.PathLike) -> dict[str, Any]:
    """The fields set by a JSON config file (e.g. a run's saved ``config.json``), checked: the
    file exists and is readable, holds one JSON object, and sets known fields of ``cls`` to
    values of their types."""
    path = Path(path)
    if not path.exists():
        raise MissingPathError(f"config={str(path)!r} does not exist")
    if not path.is_file():
        raise UsageError(f"config={str(path)!r} is not a file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"config={str(path)!r} cannot be read: {error}") from error
    try:
        values = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as error:
        raise UsageError(f"config={str(path)!r} is not valid JSON: {error.msg} at line "
                         f"{error.lineno} column {error.colno}") from error
    except _DuplicateKey as error:
        raise UsageError(f"config={str(path)!r} sets {error.args[0]!r} more than once (JSON "
                         "would silently keep the last); keep one") from error
    if not isinstance(values, dict):
        raise UsageError(f"config={str(path)!r} must hold a JSON object of settings "
                         f"{{\"name\": value, ...}}, not a {type(values).__name__}")
    values = _known_fields(cls, values, f"config={str(path)!r}")
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        if not _fits(value, hints[name]):
            raise UsageError(f"config={str(path)!r} sets {name}={value!r}, which is not of "
                             f"type {_type_name(hints[name])}")
    return values


class _DuplicateKey(ValueError):
    """A JSON object names a key twice (``args[0]`` is the key)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` object hook: a dict, refusing a key given twice."""
    values: dict[str, Any] = {}
    for key, value in pairs:
        if key in values:
            raise _DuplicateKey(key)
        values[key] = value
    return values


def _known_fields(cls: type, values: dict[str, Any], source: str) -> dict[str, Any]:
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UnknownNameError(f"{source} sets unknown config field(s): {', '.join(unknown)}")
    return dict(values)


def _fits(value: Any, annotation: Any) -> bool:
    """Whether a JSON value fits a field annotation (int for float is fine, bool for int not)."""
    base, optional = _unwrap_optional(annotation)
    if value is None:
        return optional
    origin = typing.get_origin(base)
    if origin in (list, tuple):
        (item,) = set(typing.get_args(base)) - {Ellipsis}
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if base is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, base) if isinstance(base, type) else True


def _type_name(annotation: Any) -> str:
    base, optional = _unwrap_optional(annotation)
    name = getattr(base, "__name__", str(base))
    if typing.get_origin(base) in (list, tuple):
        name = f"list of {typing.get_args(base)[0].__name__}"
    return f"{name} or null" if optional else name


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
