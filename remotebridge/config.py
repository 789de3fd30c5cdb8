"""Configuration: one TOML file with ``[database]``, ``[site.NAME]`` and ``[stage.NAME]``.

The file is found at ``--config``, else ``$REMOTEBRIDGE_CONFIG``, else
``$XDG_CONFIG_HOME/remotebridge/config.toml``; a missing file means "all defaults",
which is the embedded demo set-up (SQLite under the XDG data dir, one ``local`` site).
Every key has a default documented in the dataclass field metadata below and in the
README; an unknown key or a value of the wrong type is a ``ConfigError`` naming the key
and the file. ``$REMOTEBRIDGE_DB`` overrides ``[database] url``.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import stat
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remotebridge.errors import ConfigError


class SiteKind(enum.StrEnum):
    """How remotebridge reaches a site."""

    LOCAL = "local"
    """A folder on this machine plays the remote side (demo and unit tests)."""

    SSH = "ssh"
    """Real OpenSSH with ControlMaster sockets through the DMZ."""


class SchedulerKind(enum.StrEnum):
    """Which batch scheduler runs the jobs on a site."""

    SLURM = "slurm"
    """sbatch / squeue / sacct / scancel, srun --multi-prog."""

    MOAB = "moab"
    """msub / showq / checkjob / canceljob (with srun underneath)."""

    LOCAL = "local"
    """A detached local process runs the job script (the demo site)."""


class RunnerKind(enum.StrEnum):
    """How a job runs its tasks inside the allocation (docs/runner.md)."""

    DYNAMIC = "dynamic"
    """rbrunner.py: one worker per node takes tasks as cores free up, walltime guard,
    retries inside the job."""

    MULTIPROG = "multiprog"
    """``srun --multi-prog`` chunks run one after another (each waits for its slowest)."""


def xdg_config_home() -> Path:
    """$XDG_CONFIG_HOME or ~/.config."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def xdg_data_home() -> Path:
    """$XDG_DATA_HOME or ~/.local/share."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def data_dir() -> Path:
    """Where the embedded database and the demo survey live by default."""
    return xdg_data_home() / "remotebridge"


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass(frozen=True)
class PathRule:
    """One prefix rule translating a local path to a remote one (first match wins)."""

    local: str
    remote: str
    area: str = "scratch"  # scratch | permanent


@dataclass(frozen=True)
class DatabaseConfig:
    """``[database]``."""

    url: str = field(default="", metadata=_doc("SQLAlchemy URL; empty = SQLite in the data dir"))
    echo: bool = field(default=False, metadata=_doc("log every SQL statement"))
    lease_seconds: int = field(
        default=1800, metadata=_doc("how long a command's claim on a run lasts; a killed "
                                    "command's runs are taken up again after it"))

    def effective_url(self) -> str:
        """The URL to connect to, with the embedded default filled in."""
        if self.url:
            return self.url
        return f"sqlite:///{data_dir() / 'remotebridge.db'}"


@dataclass(frozen=True)
class SiteConfig:
    """``[site.NAME]``: one remote (or local stand-in) computing site."""

    name: str = "demo"
    kind: SiteKind = field(default=SiteKind.LOCAL, metadata=_doc("local | ssh"))
    scheduler: SchedulerKind = field(
        default=SchedulerKind.LOCAL, metadata=_doc("slurm | moab | local")
    )
    frontends: list[str] = field(
        default_factory=list, metadata=_doc("ssh host names of the front ends, in order")
    )
    ssh_config: str = field(default="", metadata=_doc("ssh_config file for this site"))
    known_hosts: str = field(default="", metadata=_doc("known_hosts file (strict checking)"))
    identity: str = field(default="", metadata=_doc("private key file"))
    control_dir: str = field(
        default="", metadata=_doc("directory of ControlMaster sockets; only the user may write")
    )
    sessions_per_master: int = field(
        default=8, metadata=_doc("channels all local processes may open on one master")
    )
    remote_root: str = field(
        default="", metadata=_doc("scratch root on the site (purged); job folders go here")
    )
    permanent_root: str = field(
        default="", metadata=_doc("permanent area on the site (survives purges)")
    )
    local_root: str = field(
        default="", metadata=_doc("kind=local: folder playing the remote side")
    )
    partition: str = field(default="", metadata=_doc("scheduler partition/queue"))
    account: str = field(default="", metadata=_doc("scheduler account to charge"))
    cores_per_node: int = field(default=24, metadata=_doc("cores of one whole node"))
    max_nodes: int = field(default=1000, metadata=_doc("most nodes one job may ask for"))
    fill_factor: float = field(default=0.8, metadata=_doc("planned share of walltime used"))
    walltime_min: int = field(default=600, metadata=_doc("shortest walltime to ask, seconds"))
    walltime_max: int = field(default=43200, metadata=_doc("longest walltime to ask, seconds"))
    runner: RunnerKind = field(
        default=RunnerKind.DYNAMIC,
        metadata=_doc("dynamic (rbrunner.py fills the allocation) | multiprog (srun chunks)"),
    )
    multiprog_max_bytes: int = field(
        default=60000,
        metadata=_doc("srun --multi-prog file size limit, bytes (60000 up to Slurm 25.05)"),
    )
    multiprog_max_line: int = field(
        default=16382,
        metadata=_doc("longest multi-prog line with its newline (srun refuses 16383+)"),
    )
    multiprog_max_args: int = field(default=128, metadata=_doc("most arguments per line"))
    poll_interval: int = field(default=300, metadata=_doc("seconds between polls of a run"))
    max_attempts: int = field(default=3, metadata=_doc("tries per task before abandoning it"))
    purge_days: float = field(
        default=0.0,
        metadata=_doc("the site deletes scratch files older than this many days (0: no "
                      "purge known); 'list' warns of runs whose inputs near that age"),
    )
    bundle_bytes: int = field(default=100_000_000, metadata=_doc("target tar bundle size"))
    jobs_per_frontend: int = field(default=4, metadata=_doc("parallel transfers per front end"))
    path_rules: list[PathRule] = field(
        default_factory=list, metadata=_doc("ordered local->remote prefix rules")
    )
    user: str = field(
        default="",
        metadata=_doc("login user on the front ends (ssh -l); empty = ssh_config's User; "
                      "'control-tool switch-user' overrides it (see site_user)"),
    )
    remote_python: str = field(
        default="python3", metadata=_doc("python on the front ends that runs rbhelper.py")
    )
    dmz: str = field(
        default="", metadata=_doc("jump host (ssh name) whose one master carries every front "
                                  "end's login; empty = the front ends' ssh -G proxyjump")
    )
    login_lifetime: int = field(
        default=43200, metadata=_doc("seconds after which the site cuts a login (12 h)")
    )
    warn_before: int = field(
        default=3600, metadata=_doc("control-tool check exits 1 when less is left before the cut")
    )


@dataclass(frozen=True)
class StageConfig:
    """``[stage.NAME]``: defaults for one pipeline stage."""

    name: str = ""
    threads: int = field(default=1, metadata=_doc("threads per science command"))
    cost_seconds: float = field(
        default=60.0, metadata=_doc("expected seconds per command when history has none")
    )
    history_runs: int = field(
        default=200, metadata=_doc("how many past results the cost median uses")
    )
    site: str = field(default="", metadata=_doc("site to use; empty = the default site"))
    path_base: str = field(
        default="", metadata=_doc("local folder of job folders; must be shared storage when "
                                  "cron runs on several hosts; empty = data dir/jobs/<stage>")
    )


STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "chip": {"threads": 2, "cost_seconds": 150.0},
    "cam": {"threads": 1, "cost_seconds": 60.0},
    "warp": {"threads": 2, "cost_seconds": 120.0},
    "stack": {"threads": 4, "cost_seconds": 600.0},
}


@dataclass(frozen=True)
class Config:
    """The whole effective configuration."""

    path: str = ""
    default_site: str = "demo"
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    sites: dict[str, SiteConfig] = field(default_factory=dict)
    stages: dict[str, StageConfig] = field(default_factory=dict)

    def site(self, name: str | None = None) -> SiteConfig:
        """The named site (or the default one); ConfigError if it is not configured."""
        key = name or self.default_site
        if key not in self.sites:
            known = ", ".join(sorted(self.sites)) or "none"
            raise ConfigError(f"no site named '{key}' (known: {known})", path=self.path)
        return self.sites[key]

    def stage(self, name: str) -> StageConfig:
        """The stage's settings, defaults filled in."""
        return self.stages.get(name) or StageConfig(name=name, **STAGE_DEFAULTS.get(name, {}))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``config show`` (enums as strings, the database password masked)."""
        from remotebridge.urltext import mask_url

        data = _plain(dataclasses.asdict(self))
        data["database"]["url"] = mask_url(self.database.url)
        return data


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


# --- loading ----------------------------------------------------------------------


def xdg_state_home() -> Path:
    """$XDG_STATE_HOME or ~/.local/state."""
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")


def user_state_file(site_name: str) -> Path:
    """The file where ``control-tool switch-user`` records a site's login user."""
    return xdg_state_home() / "remotebridge" / f"{site_name}.user"


def site_user(site: SiteConfig) -> str:
    """The login user of ``site``: the switch-user state file if present, else ``user``."""
    try:
        recorded = user_state_file(site.name).read_text(encoding="utf-8").strip()
    except OSError:
        recorded = ""
    return recorded or site.user


def user_history_file(site_name: str) -> Path:
    """Where ``control-tool switch-user`` keeps the login users a site was run as before."""
    return xdg_state_home() / "remotebridge" / f"{site_name}.users"


def site_users(site: SiteConfig) -> list[str]:
    """The current login user, then every earlier one (jobs of all of them are ours)."""
    try:
        former = user_history_file(site.name).read_text(encoding="utf-8").split()
    except OSError:
        former = []
    return [u for u in dict.fromkeys([site_user(site), site.user, *former]) if u]


def record_former_user(site_name: str, user: str) -> None:
    """Add ``user`` to the site's former login users (kept for finding their jobs)."""
    path = user_history_file(site_name)
    known = path.read_text(encoding="utf-8").split() if path.exists() else []
    if user and user not in known:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(user + "\n")


def default_config_path() -> Path:
    """The config file used when neither --config nor $REMOTEBRIDGE_CONFIG is given."""
    return xdg_config_home() / "remotebridge" / "config.toml"


def resolve_path(explicit: str | None) -> Path:
    """--config, else $REMOTEBRIDGE_CONFIG, else the XDG default."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("REMOTEBRIDGE_CONFIG")
    return Path(env) if env else default_config_path()


def load(explicit: str | None = None, *, db_override: str | None = None,
         warn: Callable[[str], None] | None = None) -> Config:
    """Read, validate and return the effective configuration.

    ``warn`` receives a one-line warning when the file holds a database password and
    others may read it (the command still runs, as libpq does for ``.pgpass``).
    """
    path = resolve_path(explicit)
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"not valid TOML: {exc}", path=str(path)) from exc
        message = exposed_password(path, raw)
        if message and warn is not None:
            warn(message)
    elif explicit or os.environ.get("REMOTEBRIDGE_CONFIG"):
        raise ConfigError("file does not exist", path=str(path), hint="check the path")
    return build(raw, str(path), db_override=db_override)


def exposed_password(path: Path, raw: dict[str, Any]) -> str | None:
    """A warning when ``path`` holds a database password and group or others may read it."""
    from remotebridge.urltext import has_password

    database = raw.get("database")
    url = database.get("url") if isinstance(database, dict) else None
    if not isinstance(url, str) or not has_password(url):
        return None
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if not mode & (stat.S_IRWXG | stat.S_IRWXO):
        return None
    return (f"{path} holds a database password and is readable by group or others; "
            f"run 'chmod 600 {path}' (or leave the password out: see README 'Configuration')")


def build(raw: dict[str, Any], path: str = "", *, db_override: str | None = None) -> Config:
    """Validate a parsed TOML document into a Config."""
    _check_keys(raw, {"database", "site", "stage", "default_site"}, "", path)
    if not isinstance(raw.get("database", {}), dict):
        raise ConfigError("must be a table [database]", path=path, key="database")
    db_raw = dict(raw.get("database", {}))
    db_url = db_override or os.environ.get("REMOTEBRIDGE_DB")
    if db_url:
        db_raw["url"] = db_url
    database = _make(DatabaseConfig, db_raw, "database", path)
    if database.lease_seconds < 1:
        raise ConfigError("must be at least 1", path=path, key="database.lease_seconds")
    sites = {
        name: _make(SiteConfig, {**body, "name": name}, f"site.{name}", path)
        for name, body in _table(raw, "site", path).items()
    }
    if not sites:
        sites = {"demo": SiteConfig(name="demo", local_root=str(data_dir() / "demo-site"))}
    sites = {n: _fill_local_root(s) for n, s in sites.items()}
    stages = {
        name: _make(StageConfig, {**STAGE_DEFAULTS.get(name, {}), **body, "name": name},
                    f"stage.{name}", path)
        for name, body in _table(raw, "stage", path).items()
    }
    default_site = raw.get("default_site") or next(iter(sites))
    if not isinstance(default_site, str) or default_site not in sites:
        raise ConfigError(f"default_site '{default_site}' is not a configured site", path=path,
                          key="default_site")
    for site in sites.values():
        _check_site(site, path)
    for stage in stages.values():
        if stage.site and stage.site not in sites:
            raise ConfigError(f"site '{stage.site}' is not a configured site", path=path,
                              key=f"stage.{stage.name}.site")
        if stage.threads < 1:
            raise ConfigError("must be at least 1", path=path, key=f"stage.{stage.name}.threads")
    return Config(path=path, default_site=default_site, database=database, sites=sites,
                  stages=stages)


#: settings that must be at least 1 (a zero would only fail later, on every run)
_POSITIVE = ("cores_per_node", "max_nodes", "sessions_per_master", "multiprog_max_bytes",
             "multiprog_max_line", "multiprog_max_args", "max_attempts", "bundle_bytes",
             "jobs_per_frontend", "walltime_max")


#: remote_python goes into every srun --multi-prog line, which knows only single quotes
#: and backslashes and expands '%': letters, digits and ``_ . / + -`` only
_MULTIPROG_SAFE = re.compile(r"^[A-Za-z0-9_./+-]+$")
#: a control character (newline above all) would end an #SBATCH/#MSUB directive line
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def _check_directive_values(site: SiteConfig, path: str, key: str) -> None:
    """Values we write into job script directives and multi-prog lines."""
    if not _MULTIPROG_SAFE.match(site.remote_python):
        raise ConfigError(f"{site.remote_python!r} has characters a multi-prog line cannot "
                          "carry: use letters, digits and _ . / + - only",
                          path=path, key=f"{key}.remote_python")
    for name in ("partition", "account"):
        if _CONTROL_CHARS.search(getattr(site, name)):
            raise ConfigError("must not contain a newline or other control character "
                              "(it would end the #SBATCH/#MSUB line)",
                              path=path, key=f"{key}.{name}")


def _check_site(site: SiteConfig, path: str) -> None:
    """Ranges and required keys that single values cannot express."""
    key = f"site.{site.name}"
    _check_directive_values(site, path, key)
    for name in _POSITIVE:
        if getattr(site, name) < 1:
            raise ConfigError("must be at least 1", path=path, key=f"{key}.{name}")
    if not 0 < site.fill_factor <= 1:
        raise ConfigError("must be in (0, 1]", path=path, key=f"{key}.fill_factor")
    if site.walltime_min > site.walltime_max:
        raise ConfigError(f"walltime_min {site.walltime_min} exceeds walltime_max "
                          f"{site.walltime_max}", path=path, key=f"{key}.walltime_min")
    if site.kind is SiteKind.SSH:
        for name in ("frontends", "remote_root"):
            if not getattr(site, name):
                raise ConfigError("is required for a site of kind 'ssh'", path=path,
                                  key=f"{key}.{name}")


def _fill_local_root(site: SiteConfig) -> SiteConfig:
    if site.kind is SiteKind.LOCAL and not site.local_root:
        return dataclasses.replace(site, local_root=str(data_dir() / f"{site.name}-site"))
    return site


def _table(raw: dict[str, Any], key: str, path: str) -> dict[str, dict[str, Any]]:
    value = raw.get(key, {})
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ConfigError(f"must be tables like [{key}.NAME]", path=path, key=key)
    return value


def _check_keys(raw: dict[str, Any], allowed: set[str], section: str, path: str) -> None:
    for key in raw:
        if key not in allowed:
            where = f"{section}.{key}" if section else key
            raise ConfigError(
                f"unknown key (allowed: {', '.join(sorted(allowed))})", path=path, key=where
            )


T = typing.TypeVar("T")


def _make(cls: type[T], raw: dict[str, Any], section: str, path: str) -> T:
    """Build dataclass ``cls`` from ``raw``, checking every key and type."""
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    _check_keys(raw, {f.name for f in fields}, section, path)
    for f in fields:
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.name not in raw:
            raise ConfigError("is required", path=path, key=f"{section}.{f.name}")
    values = {k: _coerce(hints[k], v, f"{section}.{k}", path) for k, v in raw.items()}
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str, path: str) -> Any:
    """Check ``value`` against type ``hint``; convert enums and nested rules."""
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            choices = ", ".join(m.value for m in hint)
            raise ConfigError(f"must be one of {choices}, not {value!r}", path=path,
                              key=key) from None
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"must be a list, not {type(value).__name__}", path=path, key=key)
        return [_coerce(item, v, f"{key}[{i}]", path) for i, v in enumerate(value)]
    if hint is PathRule:
        if not isinstance(value, dict):
            raise ConfigError("must be a table {local, remote, area}", path=path, key=key)
        rule = _make(PathRule, value, key, path)
        if rule.area not in ("scratch", "permanent"):
            raise ConfigError("area must be scratch or permanent", path=path, key=key)
        return rule
    return _check_scalar(hint, value, key, path)


def _check_scalar(hint: Any, value: Any, key: str, path: str) -> Any:
    if isinstance(hint, types.UnionType):
        hint = typing.get_args(hint)[0]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    if not ok:
        raise ConfigError(
            f"must be {hint.__name__}, not {type(value).__name__} ({value!r})", path=path, key=key
        )
    if hint in (int, float) and value < 0:
        raise ConfigError(f"must not be negative ({value!r})", path=path, key=key)
    return value
