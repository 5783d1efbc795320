"""The laas.v1 messages and gRPC service (betterproto), re-exported from the client package.

Generated once, by `python -m protos.generate`, into `laas_client/v1.py` (app/client/): the
server and the client a user installs on its own (`laas-client`) share that one definition.
`logs_pb2` beside this file is the protobuf (upb) form the ingest hot path uses.
"""

from laas_client.v1 import *  # noqa: F403
