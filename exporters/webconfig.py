"""TLS and basic auth for /metrics, from a Prometheus exporter-toolkit web config.

The file is the YAML that node_exporter & co. take with --web.config.file:

    tls_server_config:
      cert_file: /etc/bpfwatch/tls.crt
      key_file: /etc/bpfwatch/tls.key
      client_ca_file: /etc/bpfwatch/ca.crt     # optional: clients need a cert
    basic_auth_users:
      prometheus: $2b$12$...                   # bcrypt hash (htpasswd -nBC 12)

Anything else is refused with one line naming the field.

Basic auth: an unknown user is checked against a dummy hash of the same
cost as the real ones (as exporter-toolkit does), so the time a refusal
takes does not tell which user names exist.
"""
from __future__ import annotations

import base64
import hashlib
import os
import ssl
import threading
from dataclasses import dataclass, field

from exporters.files import InputFileError, one_line, read_regular, utf8
from tracers.runtime.errors import BpfwatchError

TLS_KEYS = {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version"}
CLIENT_AUTH = {"NoClientCert", "RequireAndVerifyClientCert", "VerifyClientCertIfGiven"}
TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")


class WebConfigError(BpfwatchError):
    pass


@dataclass
class WebConfig:
    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""
    client_auth_type: str = ""
    min_version: str = "TLS12"
    users: dict[str, bytes] = field(default_factory=dict)  # name -> bcrypt hash
    dummy_hash: bytes = b""  # for unknown users: as slow as a real check
    _verified: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def tls(self) -> bool:
        return bool(self.cert_file)

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = TLS_VERSIONS[self.min_version]
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file:
            ctx.load_verify_locations(self.client_ca_file)
            ctx.verify_mode = (ssl.CERT_OPTIONAL if self.client_auth_type == "VerifyClientCertIfGiven"
                               else ssl.CERT_REQUIRED)
        return ctx

    def authorized(self, header: str | None) -> bool:
        """Check an Authorization header; bcrypt is slow, so remember successes."""
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if hashed is None:
            _checkpw(password.encode(), self.dummy_hash or _dummy_hash(self.users))
            return False
        memo = hashlib.sha256(hashed + b"\0" + password.encode()).digest()
        with self._lock:
            if self._verified.get(user) == memo:
                return True
        ok = _checkpw(password.encode(), hashed)
        if ok:
            with self._lock:
                self._verified[user] = memo
        return ok


def _checkpw(password: bytes, hashed: bytes) -> bool:
    import bcrypt
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:
        return False


def _dummy_hash(users: dict[str, bytes]) -> bytes:
    """A hash of a random password at the highest cost among the users."""
    import bcrypt
    cost = max(int(h[4:6]) for h in users.values())
    return bcrypt.hashpw(os.urandom(16).hex().encode(), bcrypt.gensalt(cost))


class _Bad(Exception):
    def __init__(self, where: str, why: str):
        super().__init__(where, why)
        self.where, self.why = where, why


def _string(where: str, value) -> str:
    if not isinstance(value, str) or not value:
        raise _Bad(where, "must be a non-empty string")
    return value


def _file(where: str, value, base: str) -> str:
    path = os.path.join(base, _string(where, value))
    if not os.path.isfile(path):
        raise _Bad(where, f"no such file {path!r}")
    return path


def parse(data, path: str = "web config") -> WebConfig:
    """Validate a parsed YAML document; the error names the field."""
    base = os.path.dirname(os.path.abspath(path)) if os.path.exists(path) else ""
    try:
        return _parse({} if data is None else data, base)
    except _Bad as bad:
        raise WebConfigError(one_line(f"{path}: {bad.where}: {bad.why}")) from None


def _parse(data, base: str) -> WebConfig:
    if not isinstance(data, dict):
        raise _Bad("top level", "must be a mapping")
    for key in data:
        if key not in ("tls_server_config", "basic_auth_users"):
            raise _Bad(str(key), "unknown field (known: tls_server_config, basic_auth_users)")
    config = WebConfig()
    tls = data.get("tls_server_config")
    if tls is not None:
        if not isinstance(tls, dict):
            raise _Bad("tls_server_config", "must be a mapping")
        for key in tls:
            if key not in TLS_KEYS:
                raise _Bad(f"tls_server_config.{key}", f"unknown field (known: {', '.join(sorted(TLS_KEYS))})")
        for key in ("cert_file", "key_file"):
            if key not in tls:
                raise _Bad(f"tls_server_config.{key}", "missing (TLS needs cert_file and key_file)")
            setattr(config, key, _file(f"tls_server_config.{key}", tls[key], base))
        if "client_ca_file" in tls:
            config.client_ca_file = _file("tls_server_config.client_ca_file", tls["client_ca_file"], base)
        auth = tls.get("client_auth_type", "")
        if not isinstance(auth, str) or (auth and auth not in CLIENT_AUTH):
            raise _Bad("tls_server_config.client_auth_type", f"must be one of {', '.join(sorted(CLIENT_AUTH))}")
        if auth and auth != "NoClientCert" and not config.client_ca_file:
            raise _Bad("tls_server_config.client_auth_type", f"{auth} needs client_ca_file")
        config.client_auth_type = auth
        config.min_version = tls.get("min_version", "TLS12")
        if not isinstance(config.min_version, str) or config.min_version not in TLS_VERSIONS:
            raise _Bad("tls_server_config.min_version", "must be TLS12 or TLS13")
        try:
            config.ssl_context()
        except (ssl.SSLError, OSError) as exc:
            raise _Bad("tls_server_config", f"cannot load the certificate and key: {exc}") from None
    users = data.get("basic_auth_users")
    if users is not None:
        if not isinstance(users, dict):
            raise _Bad("basic_auth_users", "must be a mapping of user name to bcrypt hash")
        for user, hashed in users.items():
            where = f"basic_auth_users.{user}"
            if not isinstance(user, str) or not user or ":" in user:
                raise _Bad(where, "a user name is a non-empty string without ':'")
            if not isinstance(hashed, str) or not hashed.startswith(BCRYPT_PREFIXES) or len(hashed) != 60 \
                    or not hashed[4:6].isdigit() or not 4 <= int(hashed[4:6]) <= 31:
                raise _Bad(where, "must be a bcrypt hash ($2b$..., 60 characters), not a password")
            config.users[user] = hashed.encode()
        if config.users:
            config.dummy_hash = _dummy_hash(config.users)
    return config


def load(path: str) -> WebConfig:
    import yaml
    try:
        data = yaml.safe_load(utf8(read_regular(path)))
    except InputFileError as exc:
        raise WebConfigError(one_line(f"{path}: cannot read: {exc}")) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise WebConfigError(one_line(f"{path}: {where}not valid YAML ({getattr(exc, 'problem', None) or exc})")) from None
    return parse(data, path)
