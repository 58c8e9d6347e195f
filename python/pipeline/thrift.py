"""The `spark` target's Thrift driver (PyHive), made to read Spark 3.5's empty results.

Spark's Thrift server answers a statement without a result schema (DDL such as `create
temporary view`, which dbt's unit tests run through `run_query`) with a result-set schema of
one `Result` column but a row set carrying no columns at all. PyHive 0.7 zips the row set's
columns with the schema and fails with "'NoneType' object is not iterable". An absent column
list is an empty result, so the response is given an empty one before PyHive reads it.

Second, polling. dbt-spark runs every statement asynchronously and polls its state every
`poll_interval` seconds, an integer: 1 s at best, while most of a run's statements (a data
test, a `describe`) finish in a few hundred milliseconds, so a run of ~1,000 statements waited
mostly on the clock. In the runner's process the poll itself backs off instead: the first
poll of an operation is immediate, the next ones wait 50 ms, 100 ms, ... up to 1 s, and the
runner sets `poll_interval` to 0 (COMMERCE_SPARK_POLL_SECONDS) so dbt-spark adds no sleep of
its own. A person's plain `dbt` keeps the profile's 1 s.

Applied once per process by `pipeline.dbt` when the target is `spark`; a person's own `dbt
build` against a Thrift server without the runner hits the empty-result error in dbt's unit
tests (README, "Production").
"""

from __future__ import annotations

import threading
import time
from typing import Any

_PATCHED = "_commerce_empty_rowset"
FIRST_WAIT, MAX_WAIT = 0.05, 1.0
_polls: dict[bytes, int] = {}  # polls so far per running operation (its handle's guid)
_polls_lock = threading.Lock()


def accept_empty_row_sets() -> None:
    """Wrap TCLIService's FetchResults: a row set without columns becomes an empty one."""
    from TCLIService import TCLIService  # PyHive's generated Thrift client

    client = TCLIService.Client
    if getattr(client.FetchResults, _PATCHED, False):
        return
    original = client.FetchResults

    def fetch_results(self: Any, req: Any) -> Any:
        response = original(self, req)
        results = getattr(response, "results", None)
        if results is not None and results.columns is None and not results.rows:
            results.columns = []
        return response

    setattr(fetch_results, _PATCHED, True)
    client.FetchResults = fetch_results
    _back_off_polls(client)


def poll_wait(polls: int) -> float:
    """Seconds to wait before an operation's next status poll, after `polls` polls."""
    return 0.0 if polls == 0 else min(MAX_WAIT, FIRST_WAIT * 2 ** (polls - 1))


def _back_off_polls(client: Any) -> None:
    from TCLIService import ttypes

    original = client.GetOperationStatus
    finished = {
        ttypes.TOperationState.FINISHED_STATE,
        ttypes.TOperationState.CANCELED_STATE,
        ttypes.TOperationState.CLOSED_STATE,
        ttypes.TOperationState.ERROR_STATE,
        ttypes.TOperationState.UKNOWN_STATE,
    }

    def get_operation_status(self: Any, req: Any) -> Any:
        key = bytes(req.operationHandle.operationId.guid)
        with _polls_lock:
            polls = _polls.get(key, 0)
            _polls[key] = polls + 1
        time.sleep(poll_wait(polls))
        response = original(self, req)
        if response.operationState in finished or response.operationState is None:
            with _polls_lock:
                _polls.pop(key, None)
        return response

    client.GetOperationStatus = get_operation_status


def connect_from_environment() -> Any:
    """A PyHive cursor on the `spark` target's Thrift server, from the same COMMERCE_SPARK_*
    variables profiles/profiles.yml reads, so the runner needs no second set of credentials
    for its own statements (the warehouse lock)."""
    import os

    from pyhive import hive

    accept_empty_row_sets()
    host = os.environ.get("COMMERCE_SPARK_HOST", "localhost")
    port = int(os.environ.get("COMMERCE_SPARK_PORT", "10000"))
    user = os.environ.get("COMMERCE_SPARK_USER", "dbt")
    auth = os.environ.get("COMMERCE_SPARK_AUTH", "NONE")
    password = os.environ.get("COMMERCE_SPARK_TOKEN") or None
    if os.environ.get("COMMERCE_SPARK_USE_SSL", "false").lower() in ("true", "1", "yes"):
        from dbt.adapters.spark.connections import build_ssl_transport

        transport = build_ssl_transport(
            host=host,
            port=port,
            username=user,
            auth=auth,
            kerberos_service_name=os.environ.get("COMMERCE_SPARK_KERBEROS_SERVICE", "hive"),
            password=password,
        )
        return hive.connect(thrift_transport=transport).cursor()
    return hive.connect(host=host, port=port, username=user, auth=auth, password=password).cursor()
