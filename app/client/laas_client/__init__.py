"""The LaaS Python client: a `logging.Handler` and the `Shipper` behind it (HTTP or gRPC).

    import logging
    from laas_client import LaasHandler
    logging.getLogger().addHandler(LaasHandler("http://127.0.0.1:8080", api_key, service="api"))

A distribution of its own (`laas-client`, app/client/): it needs betterproto, grpclib and httpx,
none of the server's packages. The laas.v1 messages are `laas_client.v1`.
"""

from laas_client.handler import LaasHandler, to_record
from laas_client.shipper import PushResult, SendError, Shipper, new_batch_key
from laas_client.values import to_any

__all__ = ["LaasHandler", "PushResult", "SendError", "Shipper", "new_batch_key", "to_any",
           "to_record"]
