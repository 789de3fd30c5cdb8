"""Path translation between home (local) paths and remote paths.

Rules are the site's ordered ``path_rules`` (first matching prefix wins); a local
path no rule matches is mirrored under ``<remote_root>/home<local path>``. URIs with
a scheme (``file://``, ``neb://``) are first resolved to a local path by a pluggable
resolver registry. Every path is checked for characters the line-oriented job files
cannot carry (tab, newline, NUL) and for segments that are not normalised (``//``,
``/./``, ``/../``, which transfer refuses later): such a name is refused, never mangled.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from remotebridge.config import PathRule, SiteConfig
from remotebridge.errors import PrepareError
from remotebridge.prepare.plan import Area

FAULT_BAD_NAME = 15
_BAD = re.compile("[\t\n\r\x00]")

Resolver = Callable[[str], str]
"""Turns a URI (with scheme) into an absolute local path."""

_RESOLVERS: dict[str, Resolver] = {}


def register_resolver(scheme: str, resolver: Resolver) -> None:
    """Register (or replace) the resolver for URIs of ``scheme``."""
    _RESOLVERS[scheme.lower()] = resolver


def file_resolver(uri: str) -> str:
    """``file:///abs/path`` -> ``/abs/path``."""
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise PrepareError(f"file URI with a remote host is not supported: {uri}", path=uri)
    return unquote(parts.path)


@dataclass(frozen=True)
class NebResolver:
    """The IPP 'nebulous' case: ``neb://host/path`` -> ``<root>/path`` (host ignored)."""

    root: str

    def __call__(self, uri: str) -> str:
        """Map one neb URI onto the configured root."""
        parts = urlsplit(uri)
        return posixpath.join(self.root, unquote(parts.path).lstrip("/"))


register_resolver("file", file_resolver)
register_resolver("neb", NebResolver(os.environ.get("REMOTEBRIDGE_NEB_ROOT", "/data/neb")))


def resolve_uri(uri: str) -> str:
    """An absolute local path for a plain path or a URI with a registered scheme."""
    if "://" not in uri:
        return uri
    scheme = uri.split("://", 1)[0].lower()
    resolver = _RESOLVERS.get(scheme)
    if resolver is None:
        raise PrepareError(f"no resolver for URI scheme '{scheme}'", path=uri)
    return resolver(uri)


def check_name(path: str, component: int | None = None) -> str:
    """Refuse names that cannot be carried by a line-oriented file."""
    if path.isprintable() and path.startswith("/") and "//" not in path and "/." not in path:
        # the common name, without a segment to look at (called for every input and
        # output of a big run): printable has no tab, newline or NUL
        return path
    if _BAD.search(path):
        raise PrepareError("file name contains a tab, newline or NUL", component=component,
                           path=path, fault=FAULT_BAD_NAME)
    if not path.startswith("/"):
        raise PrepareError("not an absolute path", component=component, path=path,
                           fault=FAULT_BAD_NAME)
    if _not_normal(path):
        raise PrepareError("path is not normalised (an empty, '.' or '..' segment)",
                           component=component, path=path, fault=FAULT_BAD_NAME)
    return path


def _not_normal(path: str) -> bool:
    """True for ``//``, ``/./`` or ``/../`` segments (also at the end: ``/x/..``)."""
    parts = path.split("/")[1:]
    return any(p in ("", ".", "..") for p in parts[:-1]) or parts[-1] in (".", "..")


class PathTranslator:
    """Maps local paths to remote ones (and back) with the site's rules."""

    def __init__(self, site: SiteConfig, remote_root: str) -> None:
        self.rules: list[PathRule] = list(site.path_rules)
        self.mirror = posixpath.join(remote_root, "home")
        self._cache: dict[str, tuple[str, Area]] = {}

    def to_remote(self, local: str) -> tuple[str, Area]:
        """The remote path and area for an absolute local path."""
        head, _sep, tail = local.rpartition("/")
        hit = self._cache.get(head)
        if hit is None:
            hit = self._cache[head] = self._dir_to_remote(head or "/")
        return (hit[0].rstrip("/") + "/" + tail), hit[1]

    def _dir_to_remote(self, local_dir: str) -> tuple[str, Area]:
        probe = local_dir.rstrip("/") + "/"
        for rule in self.rules:
            prefix = rule.local.rstrip("/") + "/"
            if probe.startswith(prefix):
                rest = probe[len(prefix):].rstrip("/")
                return posixpath.join(rule.remote, rest).rstrip("/") or "/", Area(rule.area)
        return self.mirror + local_dir.rstrip("/"), Area.SCRATCH

    def to_local(self, remote: str) -> str:
        """The local path for a remote path made by :meth:`to_remote` (rules reversed)."""
        for rule in self.rules:
            prefix = rule.remote.rstrip("/") + "/"
            if remote.startswith(prefix):
                return posixpath.join(rule.local, remote[len(prefix):])
        if remote.startswith(self.mirror + "/"):
            return remote[len(self.mirror):]
        raise PrepareError("remote path matches no path rule", path=remote)
