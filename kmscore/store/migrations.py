"""Schema migrations of the SQLite key store, numbered from the first day.

``PRAGMA user_version`` holds the number of the last migration applied. Each
migration runs in its own transaction; a store newer than this code refuses to
open rather than guess.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MIGRATIONS"]

MIGRATIONS: Final[tuple[tuple[int, str], ...]] = (
    (
        1,
        """
        CREATE TABLE settings (
            name  TEXT PRIMARY KEY,
            value BLOB NOT NULL
        ) STRICT;

        CREATE TABLE keys (
            key_id                   TEXT PRIMARY KEY,
            arn                      TEXT NOT NULL,
            account                  TEXT NOT NULL,
            creation_date            REAL NOT NULL,
            description              TEXT NOT NULL,
            key_usage                TEXT NOT NULL,
            key_spec                 TEXT NOT NULL,
            origin                   TEXT NOT NULL,
            state                    TEXT NOT NULL,
            current_version          INTEGER NOT NULL,
            multi_region             INTEGER NOT NULL,
            deletion_date            REAL,
            pending_window_days      INTEGER,
            rotation_enabled         INTEGER NOT NULL,
            rotation_period_days     INTEGER,
            next_rotation_date       REAL,
            on_demand_rotation_start REAL,
            policy                   TEXT,
            revision                 INTEGER NOT NULL
        ) STRICT;

        CREATE TABLE key_materials (
            key_id        TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
            version       INTEGER NOT NULL,
            wrapped       BLOB NOT NULL,
            creation_date REAL NOT NULL,
            material_id   TEXT NOT NULL,
            rotation_type TEXT,
            reserved      INTEGER NOT NULL,
            PRIMARY KEY (key_id, version)
        ) STRICT;

        CREATE TABLE aliases (
            alias_name        TEXT PRIMARY KEY,
            key_id            TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
            creation_date     REAL NOT NULL,
            last_updated_date REAL NOT NULL
        ) STRICT;
        CREATE INDEX aliases_by_key ON aliases(key_id, alias_name);

        CREATE TABLE tags (
            key_id    TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
            tag_key   TEXT NOT NULL,
            tag_value TEXT NOT NULL,
            PRIMARY KEY (key_id, tag_key)
        ) STRICT;
        """,
    ),
    (
        2,
        """
        CREATE TABLE principals (
            name            TEXT PRIMARY KEY,
            arn             TEXT NOT NULL UNIQUE,
            principal_id    TEXT NOT NULL UNIQUE,
            uid             INTEGER UNIQUE,
            identity_policy TEXT,
            creation_date   REAL NOT NULL
        ) STRICT;

        CREATE TABLE access_keys (
            access_key_id  TEXT PRIMARY KEY,
            principal_name TEXT NOT NULL REFERENCES principals(name) ON DELETE CASCADE,
            wrapped_secret BLOB NOT NULL,
            creation_date  REAL NOT NULL
        ) STRICT;
        CREATE INDEX access_keys_by_principal ON access_keys(principal_name);

        CREATE TABLE grants (
            grant_id           TEXT PRIMARY KEY,
            key_id             TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
            name               TEXT,
            grantee_principal  TEXT NOT NULL,
            retiring_principal TEXT,
            issuing_account    TEXT NOT NULL,
            operations         TEXT NOT NULL,
            constraints        TEXT,
            token              TEXT NOT NULL UNIQUE,
            creation_date      REAL NOT NULL
        ) STRICT;
        CREATE INDEX grants_by_key ON grants(key_id, grant_id);
        CREATE INDEX grants_by_retiring ON grants(retiring_principal, grant_id);
        """,
    ),
    (
        3,
        """
        ALTER TABLE principals ADD COLUMN tags TEXT NOT NULL DEFAULT '{}'
        """,
    ),
    (
        4,
        """
        ALTER TABLE keys ADD COLUMN expiration_model TEXT;
        ALTER TABLE keys ADD COLUMN valid_to REAL;
        ALTER TABLE key_materials ADD COLUMN import_state TEXT;
        ALTER TABLE key_materials ADD COLUMN expiration_model TEXT;
        ALTER TABLE key_materials ADD COLUMN valid_to REAL;
        ALTER TABLE key_materials ADD COLUMN description TEXT;

        CREATE TABLE used_import_tokens (
            token_id  BLOB PRIMARY KEY,
            key_id    TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
            valid_to  REAL NOT NULL
        ) STRICT;
        """,
    ),
    (
        5,
        """
        ALTER TABLE keys ADD COLUMN multi_region_config TEXT
        """,
    ),
    (
        6,
        """
        ALTER TABLE keys ADD COLUMN custom_key_store_id TEXT;
        ALTER TABLE keys ADD COLUMN xks_key_id TEXT;
        ALTER TABLE keys ADD COLUMN cloud_hsm_cluster_id TEXT;
        CREATE INDEX keys_by_custom_key_store ON keys(custom_key_store_id, xks_key_id);

        CREATE TABLE custom_key_stores (
            custom_key_store_id   TEXT PRIMARY KEY,
            name                  TEXT NOT NULL UNIQUE,
            store_type            TEXT NOT NULL,
            connection_state      TEXT NOT NULL,
            creation_date         REAL NOT NULL,
            connection_error_code TEXT,
            cluster_id            TEXT,
            trust_anchor          TEXT,
            wrapped_password      BLOB,
            xks_uri_endpoint      TEXT,
            xks_uri_path          TEXT,
            xks_connectivity      TEXT,
            xks_vpc_service_name  TEXT,
            xks_vpc_service_owner TEXT,
            xks_access_key_id     TEXT,
            xks_wrapped_secret    BLOB,
            revision              INTEGER NOT NULL
        ) STRICT;
        """,
    ),
    (
        7,
        # How many changes other processes must see (the change token):
        # every write but an invocation reservation adds one.
        """
        CREATE TABLE changes (
            id         INTEGER PRIMARY KEY CHECK (id = 0),
            generation INTEGER NOT NULL
        ) STRICT;
        INSERT INTO changes VALUES (0, 0);
        """,
    ),
)
