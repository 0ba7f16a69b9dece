"""The user's settings file, ``config.yaml`` in ``platformdirs.user_config_dir("omni-bench")`` (on Linux
``~/.config/omni-bench/config.yaml``, or under ``$XDG_CONFIG_HOME``). Optional; every key is checked::

    fetch: auto    # download missing reference data before a run (default: never; then a run says what to fetch)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import platformdirs

from .errors import OmniBenchError, did_you_mean
from .schema import load_yaml

#: key -> allowed values (the first is the default)
SETTINGS: dict[str, tuple[str, ...]] = {"fetch": ("never", "auto")}


def config_path() -> Path:
    return Path(platformdirs.user_config_dir("omni-bench")) / "config.yaml"


def load() -> dict[str, Any]:
    """The settings, defaults filled in; a bad file is one clear error naming the file and the key."""
    path = config_path()
    settings = {key: allowed[0] for key, allowed in SETTINGS.items()}
    if not path.is_file():
        return settings
    raw = load_yaml(path, "settings file") or {}
    if not isinstance(raw, dict):
        raise OmniBenchError(f"{path}: must be a mapping of settings, such as 'fetch: auto'")
    for key, value in raw.items():
        if key not in SETTINGS:
            raise OmniBenchError(f"{path}: unknown setting {key!r}{did_you_mean(str(key), SETTINGS)}; "
                                 f"known: {', '.join(SETTINGS)}")
        if value not in SETTINGS[key]:
            raise OmniBenchError(f"{path}: field {key!r} is {value!r}; allowed: {', '.join(SETTINGS[key])}")
        settings[key] = value
    return settings
