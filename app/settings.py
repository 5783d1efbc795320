"""The one settings object: read once from `LAAS_*` variables (and an optional `.env`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, IPvAnyNetwork, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_HOST = "127.0.0.1"


class Settings(BaseSettings):
    """Every knob of LaaS. Frozen: build it once at start-up and pass it along.

    `kafka_bootstrap`, `es_url` and `database_url` left empty mean "use the local stack"
    (`laas stack up` starts Kafka and Elasticsearch on the `*_port` settings below and the
    user database is an SQLite file in `state_dir`). Set them to use servers you already run;
    then nothing is started for that service.
    """

    model_config = SettingsConfigDict(
        env_prefix="LAAS_", env_file=".env", env_file_encoding="utf-8", frozen=True, extra="ignore"
    )

    state_dir: Path = Field(Path(".laas"), description="Data, logs and downloads of the stack")
    java_home: Path | None = Field(
        None, description="JDK for Kafka and Elasticsearch; empty: JAVA_HOME, then java on PATH"
    )

    # Kafka
    kafka_bootstrap: str | None = Field(None, description="Existing Kafka bootstrap servers")
    kafka_port: int = Field(9092, description="Broker port of the local Kafka")
    kafka_controller_port: int = Field(9093, description="KRaft controller port of the local Kafka")
    kafka_version: str = Field("4.1.1", description="Kafka version the local stack resolves")
    partitions: int = Field(4, ge=1, description="Partitions of the LaaS topics")
    replication_factor: int = Field(1, ge=1, description="Replication factor of the LaaS topics")
    topic_prefix: str = Field("", description="Prefix of every LaaS topic name")
    kafka_local_auth: bool = Field(
        True, description="The local Kafka requires SASL/SCRAM logins and enforces ACLs: LaaS "
        "logs in as `laas` (super user), direct producers as `laas-producer` (may only write "
        "logs.raw); passwords in state_dir/kafka/credentials.json")
    kafka_credentials_file: Path | None = Field(
        None, description="The local Kafka's passwords; empty: state_dir/kafka/credentials.json "
        "(a process with a state directory of its own points at the stack's)")
    kafka_security_protocol: str = Field(
        "PLAINTEXT", pattern="^(PLAINTEXT|SASL_PLAINTEXT|SASL_SSL|SSL)$",
        description="Security protocol for an existing Kafka (LAAS_KAFKA_BOOTSTRAP)")
    kafka_sasl_mechanism: str = Field(
        "SCRAM-SHA-512", pattern="^(SCRAM-SHA-256|SCRAM-SHA-512|PLAIN)$",
        description="SASL mechanism for an existing Kafka")
    kafka_sasl_username: str | None = Field(None, description="SASL user for an existing Kafka")
    kafka_sasl_password: SecretStr | None = Field(
        None, description="SASL password for an existing Kafka")
    kafka_ssl_cafile: Path | None = Field(
        None, description="CA bundle that signed an existing Kafka's certificates (SSL)")

    # Elasticsearch
    es_url: str | None = Field(None, description="Existing Elasticsearch URL")
    es_port: int = Field(9200, description="HTTP port of the local Elasticsearch")
    es_version: str = Field("8.19.21", description="Elasticsearch version the local stack runs")
    es_heap: str = Field("1g", description="JVM heap of the local Elasticsearch")
    es_username: str | None = Field(None, description="Elasticsearch user (existing servers)")
    es_password: SecretStr | None = Field(None, description="Elasticsearch password")
    es_api_key: SecretStr | None = Field(
        None, description="Elasticsearch API key: the `encoded` value Elasticsearch returns, or "
        "`id:api_key`; wins over es_username/es_password")
    es_ca_file: Path | None = Field(
        None, description="PEM CA bundle that signed the Elasticsearch HTTP certificate (https)")
    es_ssl_fingerprint: str | None = Field(
        None, description="SHA-256 fingerprint of the Elasticsearch HTTP certificate itself, hex "
        "with or without colons: pins it instead of es_ca_file")
    es_verify_certs: bool = Field(
        True, description="Verify the Elasticsearch certificate (false only for throwaway tests)")

    # Databases
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the user database; empty: SQLite in state_dir"
    )
    postgres_enabled: bool = Field(True, description="Whether `laas stack up` starts PostgreSQL")
    postgres_port: int = Field(5433, description="Port of the local PostgreSQL cluster")

    # LaaS processes
    app_id: str = Field("laas", description="Faust application id (consumer group)")
    web_host: str = Field(LOCAL_HOST, description="Bind address of the web app")
    web_port: int = Field(8080, description="Port of the web app")
    gateway_port: int = Field(4317, description="Port of the gRPC gateway")
    gateway_host: str = Field(LOCAL_HOST, description="Bind address of the gRPC gateway")
    gateway_metrics_port: int = Field(
        9464, ge=0, description="Port of the gateway's Prometheus /metrics (on `gateway_host`)"
    )
    otlp_http_port: int = Field(
        4318, ge=0, description="Port of OTLP/HTTP (`POST /v1/logs`) in the gateway process; 0: off"
    )
    worker_web_port: int = Field(6066, description="Port of the Faust worker's own web server")
    tls_certfile: Path | None = Field(
        None, description="PEM certificate chain served by the web app and the gateway (TLS on)"
    )
    tls_keyfile: Path | None = Field(None, description="PEM private key of `tls_certfile`")
    tls_plaintext_ok: bool = Field(
        False,
        description="Serve plain HTTP/gRPC on a non-loopback address (behind a "
        "TLS-terminating proxy)",
    )
    table_store: str = Field("rocksdb://", description="Faust table store (memory:// in tests)")
    table_cache_mb: int = Field(
        8, ge=1, description="RocksDB block cache of each table partition, MB (Faust's: 2 GB)"
    )
    table_write_buffer_mb: int = Field(
        2, ge=1, description="RocksDB write buffer of each table partition, MB (Faust's: 64)"
    )

    # Ingest limits (gateway, HTTP ingest)
    ingest_max_record_bytes: int = Field(
        64 * 1024, ge=256, description="Largest accepted record (serialized protobuf bytes)"
    )
    ingest_max_batch_records: int = Field(
        10_000, ge=1, description="Most records in one push / HTTP request"
    )
    ingest_max_batch_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="Largest push / HTTP request body (decompressed)"
    )
    ingest_max_attributes: int = Field(
        128, ge=1, description="Most attributes on one record (and on its resource)"
    )
    ingest_max_key_length: int = Field(256, ge=1, description="Longest attribute key (characters)")
    ingest_max_value_length: int = Field(
        16 * 1024, ge=1, description="Longest string attribute value (characters)"
    )
    ingest_max_past_seconds: int = Field(
        7 * 24 * 3600, ge=0, description="Oldest accepted event time, seconds before now"
    )
    ingest_max_future_seconds: int = Field(
        600, ge=0, description="Furthest accepted event time, seconds after now"
    )
    ingest_default_rate_limit: float = Field(
        5000.0, ge=0, description="Records/s per tenant when the tenant sets none (0: unlimited)"
    )
    ingest_rate_limit_processes: int = Field(
        1, ge=1, description="Processes that accept ingest (gateways plus web apps): each one "
        "allows a tenant 1/N of its rate, so together they hold the quota (docs/ingest.md)"
    )
    ingest_key_cache_seconds: float = Field(
        5.0, ge=0, description="How long ingest caches an API key check (revocation delay)"
    )
    ingest_raw_message_bytes: int = Field(
        512 * 1024, ge=1024, le=900 * 1024,
        description="Largest `logs.raw` message ingest writes (records of one request and "
        "service in one `LogBatch`; below Kafka's 1 MiB message limit)",
    )
    ingest_produce_timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for Kafka's ack before answering UNAVAILABLE"
    )

    # Stream processing (normalize, index, stats, retention)
    index_prefix: str = Field("laas-", description="Prefix of every LaaS Elasticsearch index")
    es_shards: int = Field(1, ge=1, description="Primary shards of each daily log index")
    es_replicas: int = Field(0, ge=0, description="Replicas of each daily log index")
    es_numeric_attribute_fields: int = Field(
        256, ge=0, description="Numeric attribute keys indexed as numbers per daily index; later "
        "keys stay searchable as text only (docs/ingest.md, Typed attributes)"
    )
    # Tiered index layout (docs/scaling.md, "Index layout")
    es_shared_shards: int = Field(
        1, ge=1, description="Primary shards of each shared daily index (small tenants; one "
        "index family per retention class)")
    es_dedicated_min_docs: int = Field(
        2_000_000, ge=0, description="A shared-tier tenant with more documents than this in one "
        "day gets dedicated daily indices from the next day on (hourly check with retention; "
        "0: only by `laas tenant promote`)")
    stream_batch_size: int = Field(
        500, ge=1,
        description="Most raw messages (one record or a batch each) normalize takes at once",
    )
    stream_batch_events: int = Field(
        10_000, ge=1, description="Events normalize holds before it sends them (a batch of "
        "large raw messages is sent in parts: bounds the worker's memory)")
    stream_batch_linger: float = Field(
        0.05, gt=0, description="Longest wait to fill a normalize batch, seconds"
    )
    events_message_bytes: int = Field(
        256 * 1024, ge=1024,
        description="Largest `logs.events` message (events of one source from one batch)",
    )
    analytics_process: bool = Field(
        True, description="Run stats, detection and alerts as a second Faust app "
        "(`{app_id}-analytics`) in a child process of the worker (a core of its own); false "
        "runs every stage in one Faust app",
    )
    index_sink_process: bool = Field(
        True, description="Run the worker's Elasticsearch sink in a child process (a second "
        "core); false runs it in the worker's event loop",
    )
    es_batch_size: int = Field(
        2000, ge=1, description="Most events in one bulk request (a larger sink batch is "
        "written as several, one after another)")
    es_bulk_concurrency: int = Field(
        1, ge=1, description="Bulk requests of one sink batch in flight at once (2 was "
        "slower on a 2-core node shared with the worker: bench/results/pipeline.md)")
    es_batch_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="Largest bulk request body (bytes of the events)"
    )
    es_linger: float = Field(
        0.1, gt=0, description="Longest wait to fill a bulk batch, seconds (added to the "
        "delay until searchable at low rates)")
    es_retry_initial: float = Field(0.5, gt=0, description="First retry delay of a failed bulk")
    es_retry_max: float = Field(15.0, gt=0, description="Longest delay between bulk retries")
    es_request_timeout: float = Field(30.0, gt=0, description="Timeout of one bulk request")
    message_keyword_max: int = Field(
        1024, ge=16, description="Longest message indexed as exact keyword (ignore_above)"
    )
    event_max_attributes: int = Field(
        256, ge=1, description="Most attributes kept on an event (extracted fields included)"
    )
    api_key_cache_seconds: float = Field(
        30.0, ge=0, description="How long normalize trusts an API key check of a direct producer"
    )
    stats_window_seconds: int = Field(60, ge=1, description="Tumbling window of source stats")
    stats_window_retention: int = Field(
        24 * 3600, ge=60, description="How long per-window source stats are kept, seconds"
    )
    stats_snapshot_interval: float = Field(
        5.0, gt=0, description="Seconds between snapshots of the stats tables to Elasticsearch"
    )
    retention_default_days: int = Field(
        30, ge=1, description="Index retention of tenants that set none (days)"
    )
    retention_interval: float = Field(
        3600.0, gt=0, description="Seconds between runs of the index retention job in the worker"
    )
    worker_session_timeout: float = Field(
        30.0, gt=1, description="Kafka session timeout of the worker's consumers, seconds "
        "(how long a dead worker's partitions wait before moving)"
    )
    worker_gc_threshold: int = Field(
        10_000, ge=1, description="Allocations before Python's youngest garbage-collector "
        "generation is collected in the worker's processes (Python's default: 700; "
        "app/runtime/gc_tuning.py)"
    )
    metrics_lag_interval: float = Field(
        15.0, gt=0, description="Seconds between consumer lag measurements of the worker"
    )
    watchdog_seconds: float = Field(
        60.0, ge=0, description="Seconds an assigned partition may have lag without its "
        "committed offset moving before the worker's watchdog logs, counts and recovers it "
        "(app/pipeline/watchdog.py); 0 turns the watchdog off"
    )

    # Analytics (patterns, detection, alert rules, alert delivery)
    patterns_max_templates: int = Field(
        2000, ge=10, description="Templates kept per tenant and raw partition (LRU eviction)"
    )
    patterns_snapshot_interval: float = Field(
        5.0, gt=0, description="Seconds between writes of changed templates to Elasticsearch"
    )
    patterns_flush_seconds: float = Field(
        5.0, ge=0, description="Longest delay before template counts reach the changelog table"
    )
    tenant_config_ttl: float = Field(
        30.0, ge=0, description="How long the worker trusts a tenant's masking settings, seconds"
    )
    detect_window_seconds: float = Field(10.0, gt=0, description="Anomaly detection window")
    detect_warmup_windows: int = Field(
        30, ge=1, description="Windows a source is observed before explicit detectors may fire"
    )
    detect_hst_warmup_windows: int = Field(
        100, ge=1, description="Windows before the Half-Space Trees detector may fire"
    )
    detect_max_sources: int = Field(
        20_000, ge=1, description="Sources one worker keeps a monitor in memory for (~20 KB "
        "each; the least recently active is evicted to its tables and restored when it returns)"
    )
    detect_idle_seconds: float = Field(
        3600.0, gt=0, description="A source silent this long is evicted from memory (its state "
        "snapshotted to its tables, restored when it returns)"
    )
    detect_max_sources_per_tenant: int = Field(
        1000, ge=1, description="Sources per tenant with an anomaly model (further ones ignored)"
    )
    detect_model_snapshot_seconds: float = Field(
        300.0, gt=0, description="Seconds between snapshots of a source's model to its table"
    )
    detect_light_snapshot_seconds: float = Field(
        60.0, ge=0, description="Seconds between writes of a source's light state (explicit "
        "detectors, cooldowns) to its table; at once after a window that fired; 0: every window"
    )
    alert_group_seconds: float = Field(
        1800.0, gt=0, description="Firings of one condition this close together update one alert"
    )
    alert_rules_refresh_seconds: float = Field(
        10.0, gt=0, description="How often the worker reloads alert rules and webhooks, seconds"
    )
    webhook_timeout: float = Field(5.0, gt=0, description="Timeout of one webhook request")
    webhook_attempts: int = Field(6, ge=1, description="Delivery attempts of one alert")
    webhook_retry_initial: float = Field(
        1.0, gt=0, description="First retry delay of a failed webhook delivery (doubles)"
    )
    webhook_allow_networks: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Networks webhooks may target although they are not public (JSON list of "
        "CIDRs, e.g. `[\"10.20.0.0/16\"]`, for on-premise receivers); every other loopback, "
        "private, link-local, shared or reserved address is refused, cloud metadata addresses "
        "always",
    )

    # Live tail
    tail_queue_size: int = Field(
        1000, ge=1, description="Events queued per tail socket (then dropped)"
    )
    tail_ring_seconds: float = Field(
        30.0, ge=0, description="Recent events each web process keeps per tenant (tail seam)"
    )
    tail_ring_max: int = Field(
        10000, ge=0, description="Most recent events a new tail takes from the ring (per tenant)"
    )
    tail_ring_bytes: int = Field(
        8 * 1024 * 1024, ge=0,
        description="Most `logs.events` bytes each web process keeps per tenant (tail seam)",
    )
    tail_history_max: int = Field(5000, ge=0, description="Most history events a tail replays")
    tail_heartbeat_seconds: float = Field(15.0, gt=0, description="Idle seconds between heartbeats")

    # Secrets
    secret_key: SecretStr | None = Field(
        None, description="Token signing key; empty: generated once into state_dir/secret_key"
    )
    secret_keys_previous: list[SecretStr] = Field(
        default_factory=list,
        description="Former signing keys still accepted for verification (JSON list); rotation",
    )

    # Auth and tenancy
    jwt_issuer: str = Field("laas", description="`iss` claim of issued access tokens")
    jwt_audience: str = Field("laas-api", description="`aud` claim issued and required")
    access_token_ttl: int = Field(900, ge=1, description="Access token lifetime, seconds")
    refresh_token_ttl: int = Field(
        14 * 24 * 3600, ge=1, description="Refresh token lifetime, seconds"
    )
    login_failure_window: int = Field(
        900, ge=1, description="Seconds after which failed logins are forgotten"
    )
    login_delay_after: int = Field(
        3, ge=1, description="Failed logins of one account from one address before each retry "
        "from there must wait (1, 2, 4 ... seconds)"
    )
    login_max_delay: int = Field(30, ge=1, description="Longest wait between retries, seconds")
    login_account_lockout_after: int = Field(
        10, ge=1, description="Failed logins of one account from one address that lock that "
        "pair for a while (the account stays open from other addresses)"
    )
    login_address_lockout_after: int = Field(
        50, ge=1, description="Failed logins from one client address that lock the address"
    )
    login_lockout_seconds: int = Field(900, ge=1, description="How long a lockout lasts, seconds")
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Reverse proxies whose `X-Forwarded-For` names the client (JSON list of "
        "addresses or CIDRs, e.g. `[\"10.0.0.5\", \"10.1.0.0/16\"]`); from any other peer the "
        "header is ignored (web/proxies.py)",
    )
    invitation_ttl: int = Field(
        7 * 24 * 3600, ge=60, description="How long an invitation to a tenant (and its "
        "one-time code) stays valid, seconds"
    )
    websocket_recheck_seconds: float = Field(
        2.0, gt=0, description="How often an open WebSocket (tail, alert stream) re-checks its "
        "credentials; a revoked key, logout, expiry or removal closes it (4401, 4403)"
    )

    @property
    def kafka_managed(self) -> bool:
        """True when the local stack runs Kafka (no external bootstrap given)."""
        return not self.kafka_bootstrap

    @property
    def es_managed(self) -> bool:
        return not self.es_url

    @property
    def postgres_managed(self) -> bool:
        return self.postgres_enabled and not self.database_url

    @property
    def kafka_servers(self) -> str:
        return self.kafka_bootstrap or f"{LOCAL_HOST}:{self.kafka_port}"

    @property
    def elasticsearch_url(self) -> str:
        return self.es_url or f"http://{LOCAL_HOST}:{self.es_port}"

    @property
    def web_url(self) -> str:
        """Where local clients reach the web app: https when `tls_certfile` is set; a wildcard
        bind address becomes 127.0.0.1."""
        host = LOCAL_HOST if self.web_host in ("0.0.0.0", "::", "") else self.web_host
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls_certfile else 'http'}://{host}:{self.web_port}"

    @property
    def db_url(self) -> str:
        """The user database: the given URL, else an SQLite file in the state directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.state_dir / 'laas.db').resolve()}"

    @property
    def local_postgres_url(self) -> str:
        """URL of the PostgreSQL cluster that `laas stack up` runs."""
        return f"postgresql+asyncpg://laas@{LOCAL_HOST}:{self.postgres_port}/laas"


def load_settings(**overrides: object) -> Settings:
    """Read the settings once; keyword overrides win over the environment."""
    return Settings(**overrides)  # type: ignore[arg-type]
