"""Training configs: ``schema`` (what a config file holds, task by task, and its versions) over
``strict`` (reading any settings file into dataclasses with errors that name file, line and key).

Public API::

    load_config(path, overrides=()) -> Config        # a YAML or JSON file, then key.sub=value overrides
    config_from_dict(raw, source, overrides=()) -> Config
    dump_config(config) -> str, config_to_dict(config) -> dict
    ConfigError                                      # file:line: key: message
"""

from mlxseq.config.schema import (CONFIG_VERSION, MIGRATIONS, TOP_LEVEL_KEYS, Config, ModelConfig, config_from_dict,
                                  config_to_dict, dump_config, load_config)
from mlxseq.config.strict import ConfigError, apply_overrides, changed_keys, parse_override, read_dataclass

__all__ = ["load_config", "config_from_dict", "dump_config", "config_to_dict", "Config", "ModelConfig", "ConfigError",
           "CONFIG_VERSION", "MIGRATIONS", "TOP_LEVEL_KEYS", "apply_overrides", "changed_keys", "parse_override",
           "read_dataclass"]
