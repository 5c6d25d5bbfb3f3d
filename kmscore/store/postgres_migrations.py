"""Schema migrations of the PostgreSQL key store, numbered from the first day.

``kms_schema`` holds one row per migration applied. Migrations run under a
transaction-level advisory lock, so nodes starting at the same moment apply
each one exactly once; a store newer than this code refuses to open rather
than guess.

Migration 1 is the SQLite store's schema as of its migration 3, in PostgreSQL
types: ``bytea`` for blobs, ``double precision`` for times (seconds since the
epoch, as in SQLite), ``bigint`` for counts. Names compare in the "C"
collation, so keys, aliases and grants list in the same (byte) order on both
stores, whatever the database's locale. ``kms_changes`` counts committed
changes per node and connection, for the polling fallback of cross-node cache
invalidation (:mod:`kmscore.store.postgres`).
"""

from __future__ import annotations

from typing import Final

__all__ = ["MIGRATIONS", "MIGRATION_LOCK"]

#: The advisory lock key migrations run under ("kmsmigr" in ASCII).
MIGRATION_LOCK: Final = 0x6B6D736D69677200

MIGRATIONS: Final[tuple[tuple[int, str], ...]] = (
    (
        1,
        """
        CREATE TABLE settings (
            name  TEXT COLLATE "C" PRIMARY KEY,
            value BYTEA NOT NULL
        );

        CREATE TABLE keys (
            key_id                   TEXT COLLATE "C" PRIMARY KEY,
            arn                      TEXT NOT NULL,
            account                  TEXT NOT NULL,
            creation_date            DOUBLE PRECISION NOT NULL,
            description              TEXT NOT NULL,
            key_usage                TEXT NOT NULL,
            key_spec                 TEXT NOT NULL,
            origin                   TEXT NOT NULL,
            state                    TEXT NOT NULL,
            current_version          BIGINT NOT NULL,
            multi_region             SMALLINT NOT NULL,
            deletion_date            DOUBLE PRECISION,
            pending_window_days      BIGINT,
            rotation_enabled         SMALLINT NOT NULL,
            rotation_period_days     BIGINT,
            next_rotation_date       DOUBLE PRECISION,
            on_demand_rotation_start DOUBLE PRECISION,
            policy                   TEXT,
            revision                 BIGINT NOT NULL
        );

        CREATE TABLE key_materials (
            key_id        TEXT COLLATE "C" NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
            version       BIGINT NOT NULL,
            wrapped       BYTEA NOT NULL,
            creation_date DOUBLE PRECISION NOT NULL,
            material_id   TEXT NOT NULL,
            rotation_type TEXT,
            reserved      BIGINT NOT NULL,
            PRIMARY KEY (key_id, version)
        );

        CREATE TABLE aliases (
            alias_name        TEXT COLLATE "C" PRIMARY KEY,
            key_id            TEXT COLLATE "C" NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
            creation_date     DOUBLE PRECISION NOT NULL,
            last_updated_date DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX aliases_by_key ON aliases(key_id, alias_name);

        CREATE TABLE tags (
            key_id    TEXT COLLATE "C" NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
            tag_key   TEXT COLLATE "C" NOT NULL,
            tag_value TEXT NOT NULL,
            PRIMARY KEY (key_id, tag_key)
        );

        CREATE TABLE principals (
            name            TEXT COLLATE "C" PRIMARY KEY,
            arn             TEXT NOT NULL UNIQUE,
            principal_id    TEXT NOT NULL UNIQUE,
            uid             BIGINT UNIQUE,
            identity_policy TEXT,
            creation_date   DOUBLE PRECISION NOT NULL,
            tags            TEXT NOT NULL DEFAULT '{}'
        );

        CREATE TABLE access_keys (
            access_key_id  TEXT COLLATE "C" PRIMARY KEY,
            principal_name TEXT COLLATE "C" NOT NULL
                           REFERENCES principals(name) ON DELETE CASCADE,
            wrapped_secret BYTEA NOT NULL,
            creation_date  DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX access_keys_by_principal ON access_keys(principal_name);

        CREATE TABLE grants (
            grant_id           TEXT COLLATE "C" PRIMARY KEY,
            key_id             TEXT COLLATE "C" NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
            name               TEXT,
            grantee_principal  TEXT NOT NULL,
            retiring_principal TEXT COLLATE "C",
            issuing_account    TEXT NOT NULL,
            operations         TEXT NOT NULL,
            constraints        TEXT,
            token              TEXT NOT NULL UNIQUE,
            creation_date      DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX grants_by_key ON grants(key_id, grant_id);
        CREATE INDEX grants_by_retiring ON grants(retiring_principal, grant_id);

        CREATE TABLE kms_changes (
            node    TEXT NOT NULL,
            backend INTEGER NOT NULL,
            n       BIGINT NOT NULL,
            updated TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (node, backend)
        );
        """,
    ),
    (
        2,
        """
        ALTER TABLE keys ADD COLUMN expiration_model TEXT;
        ALTER TABLE keys ADD COLUMN valid_to DOUBLE PRECISION;
        ALTER TABLE key_materials ADD COLUMN import_state TEXT;
        ALTER TABLE key_materials ADD COLUMN expiration_model TEXT;
        ALTER TABLE key_materials ADD COLUMN valid_to DOUBLE PRECISION;
        ALTER TABLE key_materials ADD COLUMN description TEXT;

        CREATE TABLE used_import_tokens (
            token_id  BYTEA PRIMARY KEY,
            key_id    TEXT COLLATE "C" NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
            valid_to  DOUBLE PRECISION NOT NULL
        );
        """,
    ),
    (
        3,
        """
        ALTER TABLE keys ADD COLUMN multi_region_config TEXT;
        """,
    ),
    (
        4,
        """
        ALTER TABLE keys ADD COLUMN custom_key_store_id TEXT COLLATE "C";
        ALTER TABLE keys ADD COLUMN xks_key_id TEXT;
        ALTER TABLE keys ADD COLUMN cloud_hsm_cluster_id TEXT;
        CREATE INDEX keys_by_custom_key_store ON keys(custom_key_store_id, xks_key_id);

        CREATE TABLE custom_key_stores (
            custom_key_store_id   TEXT COLLATE "C" PRIMARY KEY,
            name                  TEXT COLLATE "C" NOT NULL UNIQUE,
            store_type            TEXT NOT NULL,
            connection_state      TEXT NOT NULL,
            creation_date         DOUBLE PRECISION NOT NULL,
            connection_error_code TEXT,
            cluster_id            TEXT,
            trust_anchor          TEXT,
            wrapped_password      BYTEA,
            xks_uri_endpoint      TEXT,
            xks_uri_path          TEXT,
            xks_connectivity      TEXT,
            xks_vpc_service_name  TEXT,
            xks_vpc_service_owner TEXT,
            xks_access_key_id     TEXT,
            xks_wrapped_secret    BYTEA,
            revision              BIGINT NOT NULL
        );
        """,
    ),
)
