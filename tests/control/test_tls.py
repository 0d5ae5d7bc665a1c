"""TLS and mTLS with certificates made for the test by the ``openssl`` CLI (the ``cryptography``
package is not a dependency of the project). The openssl CLI ships with Debian's base system;
without it these tests fail loudly rather than skip."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from clients.gen.llmgateway.v1 import control_pb2, control_pb2_grpc
from tests.control.conftest import RawRouter, start


def test_openssl_is_installed() -> None:
    assert shutil.which("openssl"), "the TLS tests need the openssl CLI (apt-get install openssl)"


EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    operator_cert: Path
    operator_key: Path


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _issue(d: Path, name: str, cn: str, ext: str) -> None:
    _run("req", *EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
    (d / f"{name}.ext").write_text(ext)
    _run(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-out", f"{name}.crt", "-extfile", f"{name}.ext",
        cwd=d,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    _run("req", "-x509", *EC, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
         "-subj", "/CN=llmgateway test CA", cwd=d)  # fmt: skip
    _issue(d, "server", "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _issue(d, "client", "router-1", "extendedKeyUsage=clientAuth\n")
    _issue(d, "operator", "ops-alice", "extendedKeyUsage=clientAuth\n")
    return Pki(
        d / "ca.crt",
        d / "server.crt",
        d / "server.key",
        d / "client.crt",
        d / "client.key",
        d / "operator.crt",
        d / "operator.key",
    )


def _client(pki: Pki, name: str) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=(pki.operator_key if name == "operator" else pki.client_key).read_bytes(),
        certificate_chain=(
            pki.operator_cert if name == "operator" else pki.client_cert
        ).read_bytes(),
    )


async def _get_state(port: int, creds: grpc.ChannelCredentials | None) -> int:
    target = f"127.0.0.1:{port}"
    channel = grpc.aio.secure_channel(target, creds) if creds else grpc.aio.insecure_channel(target)
    async with channel:
        stub = control_pb2_grpc.ControlServiceStub(channel)
        r = await stub.GetState(control_pb2.GetStateRequest(), timeout=5)
        return r.snapshot.version


async def test_tls(pki: Pki, db: Path) -> None:
    c = await start(db, tls_cert_file=pki.server_cert, tls_key_file=pki.server_key)
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
        assert await _get_state(c.app.port, creds) == 1
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await _get_state(c.app.port, None)  # plaintext to a TLS port
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await c.close()


async def test_mtls_requires_a_client_certificate(pki: Pki, db: Path) -> None:
    c = await start(
        db,
        tls_cert_file=pki.server_cert,
        tls_key_file=pki.server_key,
        tls_client_ca_file=pki.ca,
        tls_operator_names=["ops-alice"],
    )
    try:
        ca = pki.ca.read_bytes()
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await _get_state(c.app.port, grpc.ssl_channel_credentials(root_certificates=ca))
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
        # The certificate's name is the identity: ops-alice is an operator, router-1 a router
        # (which may open its session and nothing else).
        assert await _get_state(c.app.port, _client(pki, "operator")) == 1
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await _get_state(c.app.port, _client(pki, "router"))
        assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await c.close()


async def test_mtls_certificate_name_binds_the_router_id(pki: Pki, db: Path) -> None:
    c = await start(
        db, tls_cert_file=pki.server_cert, tls_key_file=pki.server_key, tls_client_ca_file=pki.ca
    )
    try:
        async with grpc.aio.secure_channel(
            f"localhost:{c.app.port}", _client(pki, "router")
        ) as channel:
            stub = control_pb2_grpc.ControlServiceStub(channel)
            other = RawRouter(stub, "router-2")
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await other.next_snapshot()
            assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
            own = RawRouter(stub, "router-1")
            assert (await own.next_snapshot()).version == 1
            own.close()
    finally:
        await c.close()


async def test_router_syncs_over_mtls(pki: Pki, db: Path, tmp_path: Path) -> None:
    from router_service.config.subscriber import SubscriberState
    from tests.router.conftest import start_harness

    c = await start(
        db,
        tls_cert_file=pki.server_cert,
        tls_key_file=pki.server_key,
        tls_client_ca_file=pki.ca,
    )
    h = await start_harness(
        control_address=f"localhost:{c.app.port}",
        router_id="router-1",
        config_cache_path=tmp_path / "r.snapshot",
        control_tls_ca_file=pki.ca,
        control_tls_cert_file=pki.client_cert,
        control_tls_key_file=pki.client_key,
    )
    try:
        assert h.app.subscriber is not None
        await asyncio.wait_for(h.app.subscriber.wait_state(SubscriberState.SYNCED), 10)
        assert h.app.config.current.version >= 1
    finally:
        await h.channel.close()
        await h.app.stop(0)
        await c.close()


def test_router_tls_settings_are_checked(pki: Pki) -> None:
    from pydantic import ValidationError

    from router_service.settings import RouterSettings

    with pytest.raises(ValidationError, match="go together"):
        RouterSettings(control_tls_ca_file=pki.ca, control_tls_cert_file=pki.client_cert)
    with pytest.raises(ValidationError, match="needs control_tls_ca_file"):
        RouterSettings(control_tls_cert_file=pki.client_cert, control_tls_key_file=pki.client_key)
