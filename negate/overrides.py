"""Refuse misspelt config keys and groups before Hydra runs, with a one-line hint of the nearest valid name.

Hydra accepts ``+outptu=csv`` (a new key nobody reads) and answers ``classifer.C=0.1`` with a suggestion to add
``+classifer.C=0.1``; both end as a silent no-op. Here every override must name a key of the composed config or an
option of a config group. A ``+`` in front of an existing key is dropped (no documented option needs one); new keys
may be added only where a mapping is passed on as keyword arguments (``trainer.*``, ``encoder.families.*``) or under
``hydra.*``.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from negate.paths import CONFIG_DIR

FLAGS_WITH_VALUE = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name", "-cd",
                    "--config-dir", "--experimental-rerun", "-sc", "--shell-completion"}
FLAGS_WITH_OPTIONAL_VALUE = {"-i", "--info"}
OTHER_CONFIG = {"-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir", "--experimental-rerun"}
OPEN_PREFIXES = ("trainer.", "encoder.families.", "ensemble.overrides.")


class ConfigKeyError(ValueError):
    """An override names no key or group option of the command's config."""


def config_groups() -> dict[str, list[str]]:
    root = Path(CONFIG_DIR)
    return {d.name: sorted(f.stem for f in d.glob("*.yaml")) for d in sorted(root.iterdir()) if d.is_dir()}


def override_positions(args: list[str]) -> tuple[list[int], list[str]]:
    """Indices of the ``key=value`` overrides in ``args`` and the Hydra flags (``-m``, ``--cfg job`` ...)."""
    positions, flags, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and not arg.startswith(("-=",)):
            flag = arg.split("=", 1)[0]
            flags.append(flag)
            takes_next = "=" not in arg and (flag in FLAGS_WITH_VALUE or (
                flag in FLAGS_WITH_OPTIONAL_VALUE and i + 1 < len(args) and "=" not in args[i + 1]
                and not args[i + 1].startswith("-")))
            i += 2 if takes_next else 1
            continue
        positions.append(i)
        i += 1
    return positions, flags


def _nearest(word: str, candidates, cutoff: float = 0.6) -> str:
    close = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _flat_keys(node, prefix: str = "") -> set[str]:
    keys = set()
    if isinstance(node, dict):
        for key, value in node.items():
            name = f"{prefix}{key}"
            keys.add(name)
            keys |= _flat_keys(value, f"{name}.")
    return keys


def _compose(config_name: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name=f"check_{config_name}"):
            cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigKeyError(" ".join(str(err).split()) or type(err).__name__) from None
    container = OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)
    choices = container.pop("hydra", {}).get("runtime", {}).get("choices", {})
    return _flat_keys(container), set(choices)


def _compose_keys(config_name: str, overrides: list[str]) -> set[str]:
    return _compose(config_name, overrides)[0]


def _group_values(override) -> list:
    """The option names an override of a config group selects (every value of a sweep, every item of a list)."""
    values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
    out = []
    for value in values:
        out += value if isinstance(value, list) else [value]
    return out


def _as_override(key: str, value) -> str:
    return f"{key}=[{','.join(map(str, value))}]" if isinstance(value, list) else f"{key}={value}"


def check_overrides(command: str, args: list[str], config_name: str | None = None) -> list[str]:
    """``args`` with a redundant ``+`` dropped, or :class:`ConfigKeyError` naming the first unknown key or option."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    config_name = config_name or command
    positions, flags = override_positions(args)
    if not positions or OTHER_CONFIG & set(flags):
        return list(args)
    parser = OverridesParser.create()
    parsed = []
    for i in positions:
        try:
            (override,) = parser.parse_overrides([args[i]])
        except HydraException as err:
            raise ConfigKeyError(f"cannot read the override {args[i]!r}: {' '.join(str(err).split())}") from None
        key = override.key_or_group
        if override.package is None and key != "hydra" and not key.startswith(("hydra.", "hydra/")):
            parsed.append((i, override))

    groups = config_groups()
    choices: dict[str, list] = {}
    for _, override in parsed:
        key = override.key_or_group
        if key not in groups or override.is_delete():
            continue
        values = [v for v in _group_values(override) if v is not None]
        for value in values:
            if str(value) not in groups[key]:
                raise ConfigKeyError(f"config group {key!r} has no option {str(value)!r}{_nearest(str(value), groups[key])}"
                                     f"; options: {', '.join(groups[key])}")
        if override.is_sweep_override():
            choices[key] = list(override.sweep_iterator())
        else:
            choices[key] = [override.value()]
    base = [_as_override(k, v[0]) for k, v in choices.items()]
    try:
        keys = _compose_keys(config_name, base)
    except ConfigKeyError as err:
        unused = re.match(r"Could not override '([^']+)'\. No match in the defaults list", str(err))
        if unused:
            raise ConfigKeyError(f"negate {command} has no config group {unused.group(1)!r}") from None
        raise
    for group, values in choices.items():  # a sweep over options: any of them may hold the key
        for value in values[1:]:
            keys |= _compose_keys(config_name, [b for b in base if not b.startswith(f"{group}=")]
                                  + [_as_override(group, value)])

    out = list(args)
    for i, override in parsed:
        key = override.key_or_group
        if key in groups:
            continue
        if key in keys:
            if override.is_add() and args[i].startswith("+") and not args[i].startswith("++"):
                out[i] = args[i][1:]
            continue
        parent = key.rpartition(".")[0]
        if (override.is_add() or override.is_force_add()) and key.startswith(OPEN_PREFIXES) and parent in keys:
            continue
        what = "config key" if "." in key or override.is_add() else "config key or group"
        raise ConfigKeyError(f"unknown {what} {key!r} for negate {command}{_nearest(key, keys | set(groups))}; "
                             f"`negate {command} --cfg job` lists the keys")
    return out
