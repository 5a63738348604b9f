"""PostgreSQL over TLS, chosen with libpq's sslmode and sslrootcert URL parameters. The test
cluster (tests/postgres) serves TLS with a certificate from its own CA and has a role,
wharf_tls, that it refuses on plain TCP, so a connection as wharf_tls that works is TLS."""

import os
import subprocess

import pytest

from conftest import WHARF, fresh_postgres_database, start_wharf


def tls_url(query):
    url = fresh_postgres_database().replace("postgres://postgres@", "postgres://wharf_tls@")
    return f"{url}?{query}" if query else url


def ca_file():
    path = os.environ.get("WHARF_TEST_POSTGRES_CA")
    if not path:
        if os.environ.get("WHARF_TESTS_RUN"):
            pytest.fail("tests/run must provide WHARF_TEST_POSTGRES_CA")
        pytest.skip("no PostgreSQL cluster: run through tests/run")
    return path


def migrate(url):
    return subprocess.run([str(WHARF), "migrate", "--metadata-url", url],
                          capture_output=True, text=True, timeout=60)


def test_verified_tls_connection_serves(tmp_path):
    url = tls_url(f"sslmode=verify-full&sslrootcert={ca_file()}")
    r = migrate(url)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "metadata schema migrated from version 0 to 6"
    s = start_wharf(tmp_path / "d", "--metadata-url", url)
    try:
        s.push_image("tls/app", "v1")
        assert s("GET", "/v2/tls/app/tags/list").json()["tags"] == ["v1"]
    finally:
        s.stop()


def test_plain_connection_is_refused_by_a_tls_only_role():
    ca_file()
    r = migrate(tls_url(""))
    assert r.returncode == 1
    assert r.stderr.startswith("wharf: error: cannot migrate the metadata store:"), r.stderr
    assert "no encryption" in r.stderr or "pg_hba.conf" in r.stderr, r.stderr


def test_certificate_from_another_ca_is_refused(tmp_path):
    ca_file()
    other = tmp_path / "other-ca.pem"
    key = tmp_path / "other-ca.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=someone-else", "-keyout", str(key), "-out", str(other)],
                   check=True, capture_output=True)
    r = migrate(tls_url(f"sslmode=require&sslrootcert={other}"))
    assert r.returncode == 1
    assert "cannot migrate the metadata store" in r.stderr, r.stderr
    assert "certificate" in r.stderr.lower(), r.stderr


def test_bad_tls_parameters_are_one_line_errors():
    ca_file()
    for query, says in [("sslmode=sometimes", "sslmode=sometimes: use disable, require"),
                        ("sslrootcert=/nonexistent.pem", "sslrootcert needs sslmode"),
                        ("sslmode=require&sslrootcert=/nonexistent.pem",
                         "cannot read sslrootcert /nonexistent.pem")]:
        r = migrate(tls_url(query))
        assert r.returncode == 1, query
        assert says in r.stderr and r.stderr.count("\n") == 1, r.stderr
