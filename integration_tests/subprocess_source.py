"""An airbyte-cdk `Source` that runs the Rust binary as a subprocess, so the CDK's in-process
standard tests (SourceTestSuiteBase) exercise the real executable.

Every stdout line must be a JSON AirbyteMessage (a non-JSON line raises); a non-zero exit
without any TRACE ERROR raises a system_error AirbyteTracedException. The catalog and state
files are passed through unparsed, so the deliberately invalid catalog of
`test_fail_read_with_bad_catalog` reaches the binary.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from airbyte_cdk.models import (
    AirbyteCatalog,
    AirbyteConnectionStatus,
    AirbyteMessage,
    AirbyteMessageSerializer,
    ConnectorSpecification,
    FailureType,
    TraceType,
    Type,
)
from airbyte_cdk.sources.source import Source
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from harness import Connector, connector_bin


class SubprocessSource(Source):
    def __init__(self, binary: Path | None = None) -> None:
        self.binary = Path(binary or connector_bin())
        self._spec: ConnectorSpecification | None = None

    # Inputs are handed to the binary as they are.
    @classmethod
    def read_catalog(cls, catalog_path: str) -> Any:  # type: ignore[override]
        with open(catalog_path, encoding="utf-8") as f:
            return json.load(f)

    @classmethod
    def read_state(cls, state_path: str) -> Any:  # type: ignore[override]
        if not state_path:
            return None
        with open(state_path, encoding="utf-8") as f:
            return json.load(f)

    # -- running the binary ---------------------------------------------------------------
    def _messages(self, args: list, files: Mapping[str, Any],
                  logger: logging.Logger | None = None) -> Iterator[AirbyteMessage]:
        with tempfile.TemporaryDirectory(prefix="source-convex-cdk-") as tmp:
            connector = Connector(Path(tmp), binary=self.binary)
            saw_error = False
            with connector.stream(args[0], **files) as streaming:
                for raw in streaming.lines():
                    line = raw.decode("utf-8").rstrip("\n")
                    try:
                        obj = json.loads(line)
                    except ValueError as e:
                        raise AirbyteTracedException(
                            message="The connector wrote a non-JSON line to stdout.",
                            internal_message=f"{line[:200]!r}: {e}",
                            failure_type=FailureType.system_error) from e
                    message = AirbyteMessageSerializer.load(obj)
                    if message.type == Type.TRACE and message.trace \
                            and message.trace.type == TraceType.ERROR:
                        saw_error = True
                    yield message
            run = streaming.run
            err_tail = run.stderr[-2000:].decode("utf-8", "replace")
            if run.exit_code != 0 and not saw_error:
                raise AirbyteTracedException(
                    message=f"source-convex {args[0]} exited with code {run.exit_code}",
                    internal_message=err_tail,
                    failure_type=FailureType.system_error)
            if logger is not None and err_tail.strip():
                logger.debug("source-convex stderr: %s", err_tail)

    @staticmethod
    def _raise_trace(message: AirbyteMessage) -> None:
        error = message.trace.error  # type: ignore[union-attr]
        raise AirbyteTracedException(
            message=error.message, internal_message=error.internal_message,
            failure_type=error.failure_type or FailureType.system_error)

    def _single(self, args: list, files: Mapping[str, Any], type_: Type,
                logger: logging.Logger) -> AirbyteMessage:
        found = []
        errors = []
        for message in self._messages(args, files, logger):
            if message.type == type_:
                found.append(message)
            elif (message.type == Type.TRACE and message.trace
                  and message.trace.type == TraceType.ERROR):
                errors.append(message)
            elif message.type == Type.LOG and message.log:
                logger.info("connector log (%s): %s", message.log.level.value,
                            message.log.message)
        if errors:
            self._raise_trace(errors[0])
        if len(found) != 1:
            raise AirbyteTracedException(
                message=f"expected exactly one {type_.value} message, got {len(found)}",
                failure_type=FailureType.system_error)
        return found[0]

    # -- Source interface ------------------------------------------------------------------
    def spec(self, logger: logging.Logger) -> ConnectorSpecification:
        if self._spec is None:
            self._spec = self._single(["spec"], {}, Type.SPEC, logger).spec
        return self._spec  # type: ignore[return-value]

    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        message = self._single(["check"], {"config": dict(config)}, Type.CONNECTION_STATUS,
                               logger)
        return message.connectionStatus  # type: ignore[return-value]

    def discover(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteCatalog:
        message = self._single(["discover"], {"config": dict(config)}, Type.CATALOG, logger)
        return message.catalog  # type: ignore[return-value]

    def read(self, logger: logging.Logger, config: Mapping[str, Any], catalog: Any,
             state: Any = None) -> Iterable[AirbyteMessage]:
        files: dict = {"config": dict(config), "catalog": catalog}
        if state is not None:
            files["state"] = state
        yield from self._messages(["read"], files, logger)
