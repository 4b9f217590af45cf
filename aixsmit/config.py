"""The configuration file: ``/etc/aixsmit/aixsmit.yaml``, or the file ``AIXSMIT_CONFIG`` names.

Keys (all optional)::

    system_filesystems: [/, /usr, /var, /tmp, /opt]   # replaces the host's default list
    volume_groups:                                     # Linux without LVM: named groups
      datavg: [/data, /srv/app]
    backup_streams: 2                                  # tar processes per mksysb/savevg image

A missing file means the defaults. A broken file is a one-line error naming file and line.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field

from .errors import ConfigError

DEFAULT_CONFIG = "/etc/aixsmit/aixsmit.yaml"

# The AIX guide's system file systems, and what Linux adds to them (issue #2).
AIX_SYSTEM_FS = ("/", "/usr", "/var", "/tmp", "/opt", "/admin", "/var/adm/ras/livedump")
LINUX_SYSTEM_FS = AIX_SYSTEM_FS + ("/boot", "/boot/efi", "/var/log", "/var/tmp")


def default_system_fs(host: str) -> tuple[str, ...]:
    return AIX_SYSTEM_FS if host == "aix" else LINUX_SYSTEM_FS


@dataclass(frozen=True)
class Config:
    path: str | None = None
    system_filesystems: tuple[str, ...] | None = None  # None: the host's default
    volume_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    backup_streams: int | None = None  # None: two where the machine has two CPUs or more

    def system_fs(self, host: str) -> tuple[str, ...]:
        return self.system_filesystems if self.system_filesystems is not None else default_system_fs(host)


def config_path() -> str:
    return os.environ.get("AIXSMIT_CONFIG") or DEFAULT_CONFIG


def load(path: str | None = None) -> Config:
    path = path or config_path()
    from .errors import AixsmitError
    from .safefile import CONFIG_LIMIT, read_bounded

    try:
        text = read_bounded(path, CONFIG_LIMIT, "configuration file").decode("utf-8")
    except FileNotFoundError:
        if path == DEFAULT_CONFIG or not os.environ.get("AIXSMIT_CONFIG"):
            return Config()
        raise ConfigError(f"aixsmit: AIXSMIT_CONFIG names {_visible(path)}, which does not exist (create it, or "
                          f"unset AIXSMIT_CONFIG for the defaults of {DEFAULT_CONFIG})")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc}")
    except AixsmitError as exc:
        raise ConfigError(str(exc)) from None
    if all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
        return Config(path=path)  # nothing set: no YAML parser to load (it costs 20 ms of start-up)
    return parse(text, path)


def _visible(text: str) -> str:
    from .fs.mounts import visible

    return visible(text)


def _line(node) -> int:
    return node.start_mark.line + 1


def _fail(path: str, node, message: str) -> ConfigError:
    return ConfigError(f"{path}: line {_line(node)}: {message}")


def _mount_point(path: str, node) -> str:
    import yaml

    if not isinstance(node, yaml.ScalarNode) or not isinstance(node.value, str) or not node.value.startswith("/"):
        raise _fail(path, node, "a mount point must be an absolute path such as /home")
    return posixpath.normpath(node.value) if node.value != "/" else "/"


def _path_list(path: str, node, what: str) -> tuple[str, ...]:
    import yaml

    if not isinstance(node, yaml.SequenceNode):
        raise _fail(path, node, f"{what} must be a list of mount points")
    return tuple(_mount_point(path, item) for item in node.value)


def _no_twice(path: str, mapping) -> None:
    """YAML keeps the last of two equal keys without a word: a second volume group of one name
    would replace the first. Name both lines instead."""
    seen: dict[str, int] = {}
    for key_node, _ in mapping.value:
        key = str(key_node.value)
        if key in seen:
            raise _fail(path, key_node, f"'{_visible(key)}' is given twice (first at line {seen[key]})")
        seen[key] = _line(key_node)


def parse(text: str, path: str = "<config>") -> Config:
    import yaml  # only when there is a file to read: it costs start-up time

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}: " if mark else ""
        problem = (exc.problem or exc.context or "not valid YAML").strip()
        raise ConfigError(f"{path}: {line}{problem}")
    except yaml.YAMLError as exc:
        # (a reader error, such as a control character: its text spans several lines)
        text = " ".join(str(exc).split()).encode("unicode_escape", "backslashreplace").decode("ascii")
        raise ConfigError(f"{path}: not valid YAML: {text}")
    if root is None:
        return Config(path=path)
    if not isinstance(root, yaml.MappingNode):
        raise _fail(path, root, "the configuration must be a mapping of keys to values")
    system: tuple[str, ...] | None = None
    groups: dict[str, tuple[str, ...]] = {}
    streams: int | None = None
    _no_twice(path, root)
    for key_node, value_node in root.value:
        key = key_node.value
        if key == "system_filesystems":
            system = _path_list(path, value_node, "system_filesystems")
        elif key == "volume_groups":
            if not isinstance(value_node, yaml.MappingNode):
                raise _fail(path, value_node, "volume_groups must map a group name to a list of mount points")
            _no_twice(path, value_node)
            owner: dict[str, tuple[str, int]] = {}
            for name_node, fs_node in value_node.value:
                name = str(name_node.value)
                if not name or not name.replace("_", "").replace("-", "").isalnum():
                    raise _fail(path, name_node, f"'{_visible(name)}' is not a valid volume group name")
                if name == "rootvg":
                    raise _fail(path, name_node, "rootvg is every file system no other group claims; it cannot be configured")
                groups[name] = _path_list(path, fs_node, f"volume group {name}")
                for mp, item in zip(groups[name], fs_node.value):
                    if mp in owner:
                        other, line = owner[mp]
                        raise _fail(path, item, f"{_visible(mp)} is in volume group {name} and in {other} (line {line}); "
                                                "a file system belongs to one volume group")
                    owner[mp] = (name, _line(item))
        elif key == "backup_streams":
            # The number itself: a quoted "2" is a string (YAML's int tag is only on plain scalars).
            if (not isinstance(value_node, yaml.ScalarNode) or value_node.value not in ("1", "2")
                    or value_node.style is not None or value_node.tag != "tag:yaml.org,2002:int"):
                raise _fail(path, value_node, "backup_streams must be 1 (one tar, e.g. for a slow disk) or 2")
            streams = int(value_node.value)
        elif key in ("schedules", "retention_weeks", "state_dir"):
            continue  # read by the modules that own them
        else:
            raise _fail(path, key_node, f"unknown key '{_visible(str(key))}' (known: system_filesystems, volume_groups, backup_streams)")
    return Config(path=path, system_filesystems=system, volume_groups=groups, backup_streams=streams)
