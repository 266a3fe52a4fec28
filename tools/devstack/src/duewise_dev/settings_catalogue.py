"""Every setting every duewise process reads, found in the code rather than listed by hand.

Two sources, so that a setting added anywhere shows up here without editing this module:

- pydantic-settings classes: every `class X(BaseSettings)` under services/<name>/src (that
  service's) and libs/*/src (every service's), found by reading the source, then imported
  and introspected: env var names from the field's validation aliases (or env_prefix +
  name), default, required, description;
- the libraries' plain environment reads (`os.environ.get("OTEL_…")`), found by the same
  scan and described in LIB_ENV below (a read missing from it is an error, not a silence).

`duewise-dev settings --markdown` prints the table README.md carries under "Every setting";
the compose and Kubernetes tests use `catalogue()` to check what they give each process.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[4]
SERVICE_NAMES = ("invoice", "dunning", "risk", "notify")

# Settings classes read by only some of a service's processes (default: all of them);
# "workers" stands for every long-running process but the API.
PROCESSES: dict[str, tuple[str, ...]] = {
    "notify.ui.settings.UiSettings": ("api",),
    "duewise_service.telemetry.WorkerSettings": ("workers",),
}

# Environment variables the libraries read directly (not through a Settings class), with
# their default and meaning. The scan in `_plain_env_reads` must find nothing beyond these.
LIB_ENV: dict[str, tuple[str | None, str]] = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": (
        None,
        "OTLP/HTTP collector base URL; spans are exported only when set",
    ),
    "OTEL_TRACES_SAMPLER": (
        None,
        "OpenTelemetry sampler; unset and not exporting: only sampled parents are recorded",
    ),
    "DUEWISE_SECRETS_DIR": (
        "/run/secrets",
        "folder of secret files, one per variable (DUEWISE_ADMIN_TOKEN, …): the environment "
        "wins over a file",
    ),
    "LOG_LEVEL": ("INFO", "log level of every process (DEBUG, INFO, WARNING, ERROR)"),
    "OTEL_SERVICE_NAME": (
        None,
        "service.name on spans and metrics (read by the OpenTelemetry SDK); the service's name",
    ),
}
# The SDK reads these itself (not found by the scan), but they are settings a deployment gives.
SDK_ENV = ("OTEL_SERVICE_NAME",)

_LOCAL = re.compile(r"127\.0\.0\.1|localhost")
# A read: os.environ.get("X"), os.getenv("X"), os.environ["X"] (but not an assignment to it).
_ENV_READ = re.compile(
    r"""os\.(?:environ\.get\(|getenv\()\s*["']([A-Z][A-Z0-9_]*)["'](?:\s*,\s*["']([^"']*)["'])?"""
    r"""|os\.environ\[\s*["']([A-Z][A-Z0-9_]*)["']\s*\](?!\s*=[^=])"""
)


@dataclass(frozen=True)
class Setting:
    """One environment variable one service's processes read."""

    env: str  # the name to set
    default: str | None  # as text; None when unset by default
    required: bool  # no default: the process does not start without it
    description: str
    source: str  # module.Class (or module) that reads it
    aliases: tuple[str, ...] = ()  # other names read for the same value, first one wins
    processes: tuple[str, ...] = ()  # empty: every process of the service

    @property
    def names(self) -> tuple[str, ...]:
        return (self.env, *self.aliases)

    @property
    def local_default(self) -> bool:
        """The default points at this machine: a deployment has to give its own value."""
        return self.default is not None and bool(_LOCAL.search(self.default))

    def read_by(self, process: str) -> bool:
        """Whether `process` (api, relay, consumer, scheduler, sender, migrate…) reads it."""
        if not self.processes or process in self.processes:
            return True
        return "workers" in self.processes and process not in ("api", "migrate")


def _settings_classes(src: Path) -> Iterator[str]:
    """Dotted paths of the BaseSettings subclasses defined under a package source folder.

    Candidates are classes with a base named `…Settings` (BaseSettings, or a project base such
    as ServiceSettings); each is imported and kept only if it really is a BaseSettings.
    """
    for path in sorted(src.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        module = ".".join(path.relative_to(src).with_suffix("").parts)
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and b.id.endswith("Settings") for b in node.bases
            ):
                cls = getattr(importlib.import_module(module), node.name)
                if issubclass(cls, BaseSettings) and cls.model_fields:
                    yield f"{module}.{node.name}"


def _plain_env_reads(src: Path) -> Iterator[tuple[str, str | None]]:
    """(variable, literal default) for each `os.environ.get("X", "d")`-style read."""
    for path in sorted(src.rglob("*.py")):
        for call, default, subscript in _ENV_READ.findall(path.read_text()):
            yield call or subscript, default or None


def _env_names(name: str, info: FieldInfo, prefix: str) -> tuple[str, ...]:
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        names = [c for c in alias.choices if isinstance(c, str) and c.isupper()]
    elif isinstance(alias, str):
        names = [alias]
    else:
        names = []
    return tuple(names) or (f"{prefix}{name}".upper(),)


def _default_text(info: FieldInfo) -> str | None:
    if info.default_factory is not None:
        value: Any = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return None
    else:
        value = info.default
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return "(a local-development value)"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _comment_descriptions(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> the comment block above it in the class body (for plain models)."""
    comments: dict[str, str] = {}
    block: list[str] = []
    consumed = False  # the block already describes the fields after it; a new comment restarts
    for line in inspect.getsource(model).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if consumed:
                block, consumed = [], False
            block.append(stripped.lstrip("#: ").strip())
        elif match := re.match(r"(\w+)\s*:", stripped):
            if block:
                comments[match.group(1)] = " ".join(block)
                consumed = True
        elif not stripped:
            block, consumed = [], False
    return comments


def _settings_of(dotted: str) -> Iterator[Setting]:
    module_name, class_name = dotted.rsplit(".", 1)
    cls = getattr(importlib.import_module(module_name), class_name)
    prefix = cls.model_config.get("env_prefix", "") or ""
    inherited: dict[str, str] = {}
    for base in reversed(cls.__mro__):  # `#:` or `#` comments above a field describe it
        if (
            isinstance(base, type)
            and issubclass(base, BaseModel)
            and not base.__module__.startswith("pydantic")
        ):
            inherited.update(_comment_descriptions(base))
    for name, info in cls.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            continue  # a nested model built from its own settings class (risk's thresholds)
        names = _env_names(name, info, prefix)
        yield Setting(
            env=names[0],
            aliases=names[1:],
            default=_default_text(info),
            required=info.is_required(),
            description=info.description or inherited.get(name, ""),
            source=dotted,
            processes=PROCESSES.get(dotted, ()),
        )


@functools.cache
def catalogue() -> dict[str, list[Setting]]:
    """Service name -> every setting its processes read, in source order, libraries last."""
    libs = sorted((ROOT / "libs").glob("*/src"))
    lib_settings = [s for src in libs for c in _settings_classes(src) for s in _settings_of(c)]
    own: dict[str, list[Setting]] = {}
    for service in SERVICE_NAMES:
        src = ROOT / "services" / service / "src"
        # The service's main `Settings` first, then the others (thresholds, the UI's).
        classes = sorted(_settings_classes(src), key=lambda c: not c.endswith(".Settings"))
        own[service] = [s for c in classes for s in _settings_of(c)]
    # Plain reads of variables no settings class declares (a tool reading
    # KAFKA_BOOTSTRAP_SERVERS for its default is already covered); described in LIB_ENV.
    known = {n for settings in [*own.values(), lib_settings] for s in settings for n in s.names}
    plain: dict[str, Setting] = {
        name: Setting(env=name, default=default, required=False, description=text, source="libs")
        for name, (default, text) in LIB_ENV.items()
    }
    for src in [*libs, *sorted((ROOT / "services").glob("*/src"))]:
        for name, default in _plain_env_reads(src):
            if name not in known and name not in plain:
                # Undescribed: listed with an empty meaning, which the catalogue test rejects.
                plain[name] = Setting(
                    env=name, default=default, required=False, description="", source="libs"
                )
    return {service: [*own[service], *lib_settings, *plain.values()] for service in own}


def env_names(service: str, process: str) -> set[str]:
    """Every variable name (aliases included) one process of a service reads."""
    return {n for s in catalogue()[service] if s.read_by(process) for n in s.names}


def plain_text() -> str:
    """One line per setting: `service  NAME=default  meaning`, for a terminal or grep."""
    lines = []
    for service, settings in catalogue().items():
        for s in settings:
            value = "(required)" if s.required else (s.default or "")
            lines.append(f"{service:8} {s.env}={value}  # {s.description}")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    """The README table: one section per service, then the settings every service shares."""
    settings = catalogue()

    # A variable every service reads with the same names and default is listed once.
    def key(s: Setting) -> tuple[tuple[str, ...], str | None]:
        return s.names, s.default

    shared_keys = {key(s) for s in settings[SERVICE_NAMES[0]]}
    for service in SERVICE_NAMES[1:]:
        shared_keys &= {key(s) for s in settings[service]}
    lines: list[str] = []

    def table(rows: list[Setting]) -> None:
        lines.append("| Variable | Default | Meaning |")
        lines.append("|---|---|---|")
        for s in rows:
            names = " / ".join(f"`{n}`" for n in s.names)
            default = "**required**" if s.required else (f"`{s.default}`" if s.default else "unset")
            where = f" (only {', '.join(s.processes)})" if s.processes else ""
            lines.append(f"| {names} | {_cell(default)} | {_cell(s.description)}{where} |")

    for service in SERVICE_NAMES:
        lines.append(f"**{service}**")
        lines.append("")
        table([s for s in settings[service] if key(s) not in shared_keys])
        lines.append("")
    lines.append("**every service** (libraries and the OpenTelemetry SDK)")
    lines.append("")
    seen: set[str] = set()
    shared: list[Setting] = []
    for s in settings[SERVICE_NAMES[0]]:
        if key(s) in shared_keys and s.env not in seen:
            seen.add(s.env)
            shared.append(s)
    table(shared)
    return "\n".join(lines) + "\n"


_TABLE = re.compile(r"(<!-- settings:begin[^>]*-->\n)(.*?)(<!-- settings:end -->)", re.S)


def readme_table(text: str) -> str | None:
    """The generated table between the markers of a README's text (None without markers)."""
    match = _TABLE.search(text)
    return match.group(2) if match else None


def update_readme(path: Path) -> bool:
    """Put the current table between the README's markers; whether anything changed."""
    text = path.read_text()
    if readme_table(text) is None:
        raise LookupError(
            f"{path} has no <!-- settings:begin --> ... <!-- settings:end --> markers"
        )
    new = _TABLE.sub(lambda m: m.group(1) + markdown() + m.group(3), text)
    if new != text:
        path.write_text(new)
    return new != text
