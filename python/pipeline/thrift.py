"""The `spark` target's Thrift driver (PyHive), made to read Spark 3.5's empty results.

Spark's Thrift server answers a statement without a result schema (DDL such as `create
temporary view`, which dbt's unit tests run through `run_query`) with a result-set schema of
one `Result` column but a row set carrying no columns at all. PyHive 0.7 zips the row set's
columns with the schema and fails with "'NoneType' object is not iterable". An absent column
list is an empty result, so the response is given an empty one before PyHive reads it.

Applied once per process by `pipeline.dbt` when the target is `spark`; a person's own `dbt
build` against a Thrift server without the runner hits the same error in dbt's unit tests
(README, "Production").
"""

from __future__ import annotations

from typing import Any

_PATCHED = "_commerce_empty_rowset"


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
