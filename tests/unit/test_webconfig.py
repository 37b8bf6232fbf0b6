"""Web config: exporter-toolkit YAML, precise refusals, bcrypt basic auth."""
import base64
import os
import subprocess

import bcrypt
import pytest

from exporters import webconfig
from exporters.webconfig import WebConfigError

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def write(tmp_path, text, name="web.yml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", d / "key.pem", "-out", d / "cert.pem"],
                   check=True, capture_output=True)
    return d


def test_basic_auth_accepts_only_the_right_password(tmp_path):
    config = webconfig.load(write(tmp_path, f"basic_auth_users:\n  prom: '{HASH}'\n"))
    assert not config.tls
    assert config.authorized(basic("prom", "s3cret"))
    assert config.authorized(basic("prom", "s3cret"))  # remembered, still right
    assert not config.authorized(basic("prom", "wrong"))
    assert not config.authorized(basic("other", "s3cret"))
    assert not config.authorized(None)
    assert not config.authorized("Basic !!!notbase64")
    assert not config.authorized("Bearer abc")


def test_empty_config_means_no_auth_no_tls(tmp_path):
    config = webconfig.load(write(tmp_path, ""))
    assert config.authorized(None) and not config.tls and config.ssl_context() is None


def test_tls_with_relative_paths_and_client_ca(tmp_path, cert):
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_bytes((cert / name).read_bytes())
    config = webconfig.load(write(tmp_path, "tls_server_config:\n  cert_file: cert.pem\n"
                                            "  key_file: key.pem\n  client_ca_file: cert.pem\n"))
    assert config.tls and config.ssl_context().verify_mode.name == "CERT_REQUIRED"


@pytest.mark.parametrize("text, message", [
    ("- a\n- b\n", "top level: must be a mapping"),
    ("basic_auth_user: {}\n", "basic_auth_user: unknown field"),
    ("basic_auth_users:\n  prom: hunter2\n", "basic_auth_users.prom: must be a bcrypt hash"),
    ("basic_auth_users: [prom]\n", "basic_auth_users: must be a mapping"),
    ("tls_server_config:\n  cert_file: /nonexistent.pem\n  key_file: /nonexistent.key\n",
     "tls_server_config.cert_file: no such file '/nonexistent.pem'"),
    ("tls_server_config:\n  key_file: k\n", "tls_server_config.cert_file: missing"),
    ("tls_server_config:\n  certfile: x\n", "tls_server_config.certfile: unknown field"),
    ("basic_auth_users:\n  prom: [\n", "line 3: not valid YAML"),
])
def test_malformed_configs_are_refused_naming_the_field(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(WebConfigError) as err:
        webconfig.load(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_tls_options_name_the_field(tmp_path, cert):
    head = f"tls_server_config:\n  cert_file: {cert}/cert.pem\n  key_file: {cert}/key.pem\n"
    for extra, message in (("  client_auth_type: RequireAndVerifyClientCert\n", "needs client_ca_file"),
                           ("  client_auth_type: Maybe\n", "client_auth_type: must be one of"),
                           ("  min_version: TLS10\n", "min_version: must be TLS12 or TLS13")):
        with pytest.raises(WebConfigError, match=message):
            webconfig.load(write(tmp_path, head + extra))
    swapped = f"tls_server_config:\n  cert_file: {cert}/key.pem\n  key_file: {cert}/cert.pem\n"
    with pytest.raises(WebConfigError, match="tls_server_config: cannot load the certificate and key"):
        webconfig.load(write(tmp_path, swapped))


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(WebConfigError, match="cannot read: No such file or directory"):
        webconfig.load(str(tmp_path / "absent.yml"))


def test_listen_addresses_default_to_loopback():
    import argparse

    from exporters.daemon import build_parser, listen_address
    assert build_parser().parse_args([]).listen == ("127.0.0.1", 10100)
    assert listen_address("0.0.0.0:80") == ("0.0.0.0", 80)
    assert listen_address("[::1]:10100") == ("::1", 10100)
    assert listen_address(":10100") == ("", 10100)  # every interface: only when asked
    for bad in ("10100", "localhost:10100", "127.0.0.1:99999", "127.0.0.1:http"):
        with pytest.raises(argparse.ArgumentTypeError):
            listen_address(bad)


def test_builtin_tracers_run_with_their_cli_defaults_and_exporter_settings():
    from exporters.daemon import builtin_job
    from tracers.tools import biolatency, execsnoop, syscount
    job = builtin_job(syscount.TRACER)
    assert job.skip == {"on_sys_exit"} and "COUNT_AT_EXIT" not in job.defines
    job = builtin_job(execsnoop.TRACER)
    assert job.defines["COUNT_ONLY"] == 1
    assert job.skip == {"on_execve_enter", "on_execveat_enter", "on_exec"}  # the hooks marked cli_only
    job = builtin_job(biolatency.TRACER)
    assert "on_insert" in job.skip and "on_complete" not in job.skip


def test_wrong_types_and_bytes_are_one_line(tmp_path, cert):
    head = f"tls_server_config:\n  cert_file: {cert}/cert.pem\n  key_file: {cert}/key.pem\n"
    for extra, message in (("  min_version: [1]\n", "min_version: must be TLS12 or TLS13"),
                           ("  client_auth_type: [x]\n", "client_auth_type: must be one of"),
                           ("  min_version: 12\n", "min_version: must be TLS12 or TLS13")):
        with pytest.raises(WebConfigError, match=message) as err:
            webconfig.load(write(tmp_path, head + extra))
        assert "\n" not in str(err.value)
    binary = tmp_path / "bin.yml"
    binary.write_bytes(b"basic_auth_users:\n  prom: \xff\xfe\n")
    with pytest.raises(WebConfigError, match=r"cannot read: not UTF-8 text \(byte 0xff on line 2\)"):
        webconfig.load(str(binary))
    fifo = tmp_path / "fifo.yml"
    os.mkfifo(fifo)
    with pytest.raises(WebConfigError, match="cannot read: not a regular file"):
        webconfig.load(str(fifo))
    with pytest.raises(WebConfigError) as err:
        webconfig.load(write(tmp_path, "basic_auth_users:\n  \"a\\nb\": x\n"))
    assert "\n" not in str(err.value) and "a\\nb" in str(err.value)


def test_unknown_users_cost_a_bcrypt_check_like_known_ones(tmp_path, monkeypatch):
    """Timing must not tell which user names exist (exporter-toolkit's dummy
    hash): an unknown user costs one bcrypt check at the users' cost, as a
    known one does (what each check costs is bcrypt's, measured by no test)."""
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(8)).decode()
    config = webconfig.load(write(tmp_path, f"basic_auth_users:\n  prom: '{hashed}'\n"))
    assert config.dummy_hash.startswith(b"$2b$08$") and config.dummy_hash != hashed.encode()
    checked = []
    real = webconfig._checkpw
    monkeypatch.setattr(webconfig, "_checkpw", lambda pw, h: checked.append(h) or real(pw, h))
    for user in ("nobody", "prom", "nobody"):
        assert not config.authorized(basic(user, "wrong"))
    assert checked == [config.dummy_hash, hashed.encode(), config.dummy_hash]
