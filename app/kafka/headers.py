"""The Kafka wire headers of LaaS's messages: one definition for the writers and the readers.

`logs.raw` (app/ingest/writer.py writes, app/pipeline/normalize.py reads): the content type of
a `laas.v1.LogBatch` value, the tenant stamp (`laas-tenant-id`, `laas-tenant`, `laas-source`,
signed: app/kafka/stamp.py), a batch's idempotency key and record positions, a direct
producer's `laas-api-key`, `laas-service`/`laas-host` defaults of its records. `logs.events`
(app/pipeline/event_messages.py): the tenants of a message (`laas-tenants`). `logs.deadletter`
(app/pipeline/events.py): the reason and stage. Names are lower case (readers lower-case them).
"""

from __future__ import annotations

H_CONTENT_TYPE = "content-type"
H_TENANT_ID = "laas-tenant-id"
H_TENANT = "laas-tenant"  # the tenant's slug
H_SOURCE = "laas-source"  # `gateway` or `http`
H_SERVICE = "laas-service"
H_HOST = "laas-host"
H_BATCH_KEY = "laas-batch-key"  # the request's idempotency key
H_BATCH_INDEX = "laas-batch-index"  # the records' positions in the request, as ranges
H_SIGNATURE = "laas-signature"  # the stamp (app/kafka/stamp.py)
H_API_KEY = "laas-api-key"  # not signed: a direct producer's credential
H_TENANTS = "laas-tenants"  # logs.events: the tenant ids of a message's events, "1,7"
H_DL_REASON = "laas-dl-reason"
H_DL_STAGE = "laas-dl-stage"

# The content type of a `laas.v1.LogBatch` value, as written, and what a reader looks for in a
# lower-cased content type.
LOG_BATCH_CONTENT_TYPE = b"application/x-protobuf; messageType=laas.v1.LogBatch"
LOG_BATCH = "laas.v1.logbatch"
