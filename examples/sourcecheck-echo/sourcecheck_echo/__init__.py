"""The ``echo`` connector, an example of a third-party sourcecheck plugin.

It checks a TCP echo service (RFC 862): ``resolve`` the host, open ``tcp``, then ``echo``:
send one line and expect the very same line back. Small as it is, it has what every
connector has: a configuration model with a secret field, named steps run through the
Probe, typed failures with hints, and ``example_config`` for the contract suite.
See docs/writing-a-connector.md in the sourcecheck repository.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, ClassVar

from pydantic import ConfigDict, Field

from connectors.base import Connector, ConnectorConfig, Probe, Secret
from connectors.errors import FailureType, ProbeFailure
from connectors.fields import DestinationHost, DestinationPort
from connectors.network import connect_tcp, resolve


class EchoConfig(ConnectorConfig):
    """Where the echo service listens, and the line to send it."""

    model_config = ConfigDict(title="Echo service")

    host: DestinationHost = Field(
        title="Host",
        description="Host name or IP address of the echo service (no scheme, no port).",
        examples=["echo.example.com"],
    )
    port: DestinationPort = Field(
        7, title="Port", description="TCP port of the echo service (7 is the standard one).", examples=[7]
    )
    token: Secret = Field(
        title="Token",
        description=(
            "The line sent to the service, which must send it back unchanged. Kept secret: masked in every answer."
        ),
    )


class EchoConnector(Connector):
    name = "echo"  # the same as the entry point's name
    title = "Echo service (TCP)"
    category = "other"
    documentation_url = "https://www.rfc-editor.org/rfc/rfc862"
    config_model = EchoConfig
    steps: ClassVar[tuple[str, ...]] = ("resolve", "tcp", "echo")

    @classmethod
    def example_config(cls, host: str, port: int) -> dict[str, Any]:
        return {"host": host, "port": port, "token": "example-token"}

    async def check(self, config: EchoConfig, probe: Probe) -> None:
        address = await connect_tcp(probe, await resolve(probe, config.host, config.port))
        line = config.token.get_secret_value().encode() + b"\n"
        async with probe.step("echo") as step:
            try:
                reader, writer = await asyncio.open_connection(address.ip, address.port)
            except OSError as exc:
                raise ProbeFailure(
                    FailureType.CONNECTION_REFUSED, f"Could not connect again to port {address.port}: {exc.strerror}"
                ) from None
            try:
                writer.write(line)
                await writer.drain()
                # No timeout of our own: run_check's deadline cancels this wait and reports
                # a timeout in this step.
                answer = await reader.readexactly(len(line))
            except asyncio.IncompleteReadError as exc:
                raise ProbeFailure(
                    FailureType.UNEXPECTED_RESPONSE,
                    "The service closed the connection before echoing the whole line"
                    if exc.partial
                    else "The service closed the connection without answering",
                    hint="Check that this port runs an echo service, not another protocol.",
                    retryable=True,
                ) from None
            except ConnectionError as exc:
                raise ProbeFailure(
                    FailureType.UNEXPECTED_RESPONSE,
                    f"The connection broke during the echo ({exc.strerror or type(exc).__name__})",
                ) from None
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            if answer != line:
                # Never quote what came back: it is the secret, or close to it.
                raise ProbeFailure(
                    FailureType.UNEXPECTED_RESPONSE,
                    f"The service answered {len(answer)} bytes that differ from the line sent",
                    hint="Check that this port runs an echo service, not another protocol.",
                )
            step.message = f"The line came back unchanged ({len(line)} bytes)"
