"""The one way configs are composed: the launcher, every tool and the add-ons call :func:`compose`.

:func:`compose` composes Hydra overrides as VISSL does (the plugin's patches applied: apex defaults
rewritten; values inferred; interpolations resolved; ``~/`` paths expanded), without side effects:
VISSL's ``convert_to_attrdict`` would dump the config into ``CHECKPOINT.DIR``.  A bad name or
override is one :class:`~vissl_aasae.errors.ConfigError` line; an unknown config name lists the
plugin's configs (:func:`config_listing`).  Importing this module loads the plugin
(:mod:`vissl_aasae.registry`): a composed config can be checked and built at once.
"""

import difflib
import os
import re
from typing import Dict, List

from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from vissl.utils.hydra_config import compose_hydra_configuration, convert_to_attrdict

import vissl_aasae.registry  # noqa: F401  (the plugin's patches and config defaults, before composing)
from hydra_plugins.vissl_aasae_searchpath.vissl_aasae_searchpath import aasae_config_root
from vissl_aasae.errors import ConfigError
from vissl_aasae.settings import SECTIONS


def available_configs() -> Dict[str, List[str]]:
    """The plugin's configs by folder (``pretrain/aasae``, ``benchmark/aasae/knn``, ...), mix-ins apart."""
    root = aasae_config_root()
    if root.startswith("file://"):
        base = root[len("file://") :]
    else:
        base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
    base = os.path.join(base, "config")
    found: Dict[str, List[str]] = {}
    for top in ("pretrain/aasae", "benchmark/aasae"):
        for folder, _, files in sorted(os.walk(os.path.join(base, top))):
            names = sorted(f[:-5] for f in files if f.endswith(".yaml") and f != "common.yaml")
            if names:
                found[os.path.relpath(folder, base)] = names
    return found


def config_listing() -> str:
    """One line: the plugin's configs and mix-ins, as ``config=`` and ``+config/...=`` take them."""
    groups = available_configs()
    mixins = ("pretrain/aasae/datasets", "pretrain/aasae/models", "pretrain/aasae/variant")
    configs = [f"{k}/{{{','.join(v)}}}" for k, v in groups.items() if k not in mixins]
    extra = [f"+config/{k}={{{','.join(v)}}}" for k, v in groups.items() if k in mixins]
    return "AASAE configs: " + ", ".join(configs) + ("; mix-ins: " + ", ".join(extra) if extra else "")


def compose(overrides: List[str]):
    """(args, config) of Hydra ``overrides`` as VISSL composes them (apex defaults rewritten, values
    inferred), without side effects: nothing is written (VISSL would dump the config into CHECKPOINT.DIR)."""
    overrides = [_quote_home(o) for o in overrides]
    try:
        cfg = compose_hydra_configuration(overrides)
        added = [o for o in overrides if o.lstrip("+").startswith("config.") and o.startswith("+")]
        if added:
            _check_added_keys(added, compose_hydra_configuration([o for o in overrides if o not in added]))
        # interpolations resolved now (VISSL would keep them as strings): each data set's stem, size and
        # normalisation are declared once (configs/config/pretrain/aasae/datasets) and read by the configs
        OmegaConf.resolve(cfg)
        args, config = convert_to_attrdict(cfg, dump_config=False)
        _expand_user_paths(config)
        return args, config
    except (HydraException, OmegaConfBaseException) as err:
        # Hydra's message spans lines (e.g. the available options): keep it, on one line
        message = " ".join(str(err).split("Config search path")[0].split())
        if "Available options in 'config':" in message:  # a config name: Hydra lists VISSL's only one
            message = message.split(" Available options in 'config':")[0] + ". " + config_listing()
        raise ConfigError(message or type(err).__name__) from None


def _check_added_keys(added: List[str], base) -> None:
    """``+config.KEY=VALUE`` (Hydra's hint for a key it does not know) adds a key nothing reads: refuse
    it, naming the closest known key.  The plugin's own sections name their unknown keys themselves
    (:func:`vissl_aasae.settings.validate`)."""
    plugin = tuple(section.PATH for section in SECTIONS)
    for override in added:
        path = override.lstrip("+").split("=", 1)[0].split(".")[1:]
        if ".".join(path).startswith(plugin):
            continue
        node, known = base.config, []
        for depth, part in enumerate(path):
            if not hasattr(node, "keys") or part not in node:
                keys = [str(k) for k in node.keys()] if hasattr(node, "keys") else []
                close = difflib.get_close_matches(part, keys, n=1)
                where = ".".join(known) or "config"
                hint = f"; did you mean config.{'.'.join(known + close)}?" if close else ""
                raise ConfigError(
                    f"{override.split('=', 1)[0]}: {where} has no key {part!r}, so nothing would read it{hint}"
                )
            known.append(part)
            node = node[part]


def _quote_home(override: str) -> str:
    """``KEY=~/x`` (or ``KEY=[~/x,...]``) as Hydra's grammar accepts it: ``~`` must be quoted there."""
    key, sep, value = override.partition("=")
    if not sep or "~" not in value:
        return override
    if value.startswith("~"):
        return f"{key}={value!r}" if "'" not in value else override
    return re.sub(r"(?<=[\[,])\s*(~[^,\]'\"]*)", lambda m: repr(m.group(1)), override)


def _expand_user_paths(node) -> None:
    """A value starting with ``~/`` is a path in the user's home (VISSL would make a ``./~`` folder)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in list(items):
        if isinstance(value, str) and (value == "~" or value.startswith("~/")):
            node[key] = os.path.expanduser(value)
        else:
            _expand_user_paths(value)
