"""Hydra search-path plugin: makes ``config=pretrain/aasae/<name>`` resolve from any directory.

After a regular ``pip install .`` the yaml files are the data package ``vissl_aasae.configs``;
in an editable (compat) install they are read from the repository's ``configs/`` folder.
"""

import importlib.util
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


def aasae_config_root() -> str:
    """The search-path entry holding ``config/pretrain/aasae``."""
    spec = importlib.util.find_spec("vissl_aasae")
    if spec is None or spec.origin is None:
        raise ImportError("vissl_aasae is not installed; run ./setup.sh or pip install .")
    package_dir = Path(spec.origin).parent
    installed = package_dir / "configs"
    if (installed / "config").is_dir():
        return "pkg://vissl_aasae.configs"
    return "file://" + str(package_dir.parent / "configs")


class VisslAasaeSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="vissl_aasae", path=aasae_config_root())
