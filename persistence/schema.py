"""Versioned, idempotent migrations, safe when many workers start at once.

Every migration runs in one transaction holding a transaction-scoped advisory lock
keyed by the schema name, so concurrent ``migrate`` calls serialise and the later ones
find nothing to do. Applied versions are recorded in ``<schema>.schema_migrations``.

Design notes, kept with the DDL:
- Every table is keyed by ``id uuid`` computed with uuid5 (accelerated/ids.py), so a
  re-run writes the same ids and every write is an upsert.
- There are no foreign keys between the stage tables: the write-behind writer loads
  rows in batches that span many documents and tables, and the traditional path writes
  stage by stage; both would need deferred constraints and ordering for no benefit,
  because the ids are derived from their parents anyway.
- ``canonical_entities`` is shared by the documents of a project; its ``name`` is the
  least name seen (``LEAST`` on conflict), so the row never depends on document order.
- Indexes are the few the readers need (document_id, project): each one slows the
  writer, which is the hot path.
- Edges that restate a column (HAS_CHUNK, MENTIONS, REFERS_TO) are not stored: the
  ``relationships`` view derives them (migration 6), so the writer writes only the
  computed CO_OCCURS_WITH edges, into ``stored_relationships``.
"""

from __future__ import annotations

import re
from typing import Final

import asyncpg  # type: ignore[import-untyped]

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# (version, name, SQL). Never edit an applied migration: append a new one. "{s}" is the
# quoted schema name.
MIGRATIONS: Final[tuple[tuple[int, str, str], ...]] = (
    (
        1,
        "stage tables",
        """
        CREATE TABLE {s}.documents (
            id uuid PRIMARY KEY,
            project text NOT NULL,
            source text NOT NULL,
            source_key text NOT NULL,
            sha256 text NOT NULL,
            format text NOT NULL,
            size_bytes bigint NOT NULL,
            status text NOT NULL,
            error text,
            category text,
            method text,
            page_count integer,
            raw_pages jsonb,
            pages jsonb,
            metadata jsonb,
            raw_text text,
            text text,
            generation integer NOT NULL DEFAULT 1,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX documents_project_idx ON {s}.documents (project);
        COMMENT ON TABLE {s}.documents IS
            'One row per (project, source_key), written at intake before any stage runs; '
            'raw_text/raw_pages hold the extract output, text/pages the clean output.';

        CREATE TABLE {s}.chunks (
            id uuid PRIMARY KEY,
            document_id uuid NOT NULL,
            project text NOT NULL,
            idx integer NOT NULL,
            text text NOT NULL,
            start_char integer NOT NULL,
            end_char integer NOT NULL,
            page_start integer NOT NULL,
            page_end integer NOT NULL
        );
        CREATE INDEX chunks_document_idx ON {s}.chunks (document_id);
        COMMENT ON TABLE {s}.chunks IS
            'No foreign key to documents: rows arrive in batches across documents.';

        CREATE TABLE {s}.entity_mentions (
            id uuid PRIMARY KEY,
            document_id uuid NOT NULL,
            chunk_id uuid NOT NULL,
            project text NOT NULL,
            type text NOT NULL,
            text text NOT NULL,
            normalized text NOT NULL,
            start_char integer NOT NULL,
            end_char integer NOT NULL,
            canonical_id uuid
        );
        CREATE INDEX entity_mentions_document_idx ON {s}.entity_mentions (document_id);
        COMMENT ON TABLE {s}.entity_mentions IS
            'canonical_id is NULL until resolve; no foreign keys (batched loads).';

        CREATE TABLE {s}.canonical_entities (
            id uuid PRIMARY KEY,
            project text NOT NULL,
            type text NOT NULL,
            key text NOT NULL,
            name text NOT NULL
        );
        CREATE INDEX canonical_entities_project_idx ON {s}.canonical_entities (project);
        COMMENT ON TABLE {s}.canonical_entities IS
            'Shared by a project''s documents; upserts keep LEAST(name) so order never matters.';

        CREATE TABLE {s}.relationships (
            id uuid PRIMARY KEY,
            project text NOT NULL,
            document_id uuid NOT NULL,
            type text NOT NULL,
            source_type text NOT NULL,
            source_id uuid NOT NULL,
            target_type text NOT NULL,
            target_id uuid NOT NULL,
            weight double precision NOT NULL DEFAULT 1.0
        );
        CREATE INDEX relationships_document_idx ON {s}.relationships (document_id);
        COMMENT ON TABLE {s}.relationships IS
            'Graph edges staged for a graph load; no foreign keys (batched loads).';

        CREATE TABLE {s}.wb_applied (
            intent_id uuid PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX wb_applied_at_idx ON {s}.wb_applied (applied_at);
        COMMENT ON TABLE {s}.wb_applied IS
            'Write-behind intents already applied, recorded in the same transaction as '
            'their rows: a redelivered intent is a no-op. Pruned after 7 days.';
        """,
    ),
    (
        2,
        "party roles",
        """
        ALTER TABLE {s}.entity_mentions ADD COLUMN role text;
        COMMENT ON COLUMN {s}.entity_mentions.role IS
            'A party''s role where the document states it (plaintiff, defendant, '
            'petitioner, respondent, appellant, appellee, debtor, creditor, contract party).';

        CREATE VIEW {s}.canonical_entity_roles AS
            SELECT canonical_id AS id, array_agg(DISTINCT role ORDER BY role) AS roles
            FROM {s}.entity_mentions
            WHERE canonical_id IS NOT NULL AND role IS NOT NULL
            GROUP BY canonical_id;
        COMMENT ON VIEW {s}.canonical_entity_roles IS
            'Roles of a canonical entity over all its mentions: derived, so it is the same '
            'whatever order documents were written in and follows re-processing.';
        """,
    ),
    (
        3,
        "query side",
        """
        CREATE INDEX entity_mentions_canonical_idx ON {s}.entity_mentions (canonical_id)
            WHERE canonical_id IS NOT NULL;
        CREATE INDEX relationships_source_idx ON {s}.relationships (source_id, type);
        CREATE INDEX relationships_target_idx ON {s}.relationships (target_id, type);
        CREATE INDEX documents_project_status_idx ON {s}.documents (project, status);
        CREATE INDEX documents_project_generation_idx ON {s}.documents (project, generation);
        CREATE INDEX canonical_entities_lookup_idx
            ON {s}.canonical_entities (project, type, lower(name));
        COMMENT ON INDEX {s}.entity_mentions_canonical_idx IS
            'Walks from an entity to its mentions and documents (README "Querying").';

        CREATE VIEW {s}.document_entities AS
            SELECT m.project, m.document_id, d.source_key, m.canonical_id, c.type, c.name,
                   count(*) AS mention_count
            FROM {s}.entity_mentions m
            JOIN {s}.canonical_entities c ON c.id = m.canonical_id
            JOIN {s}.documents d ON d.id = m.document_id
            GROUP BY m.project, m.document_id, d.source_key, m.canonical_id, c.type, c.name;
        COMMENT ON VIEW {s}.document_entities IS
            'One row per (document, canonical entity) with the number of its mentions there.';

        CREATE VIEW {s}.entity_documents AS
            SELECT c.project, c.id AS canonical_id, c.type, c.name,
                   count(DISTINCT m.document_id) AS document_count,
                   count(*) AS mention_count
            FROM {s}.canonical_entities c
            JOIN {s}.entity_mentions m ON m.canonical_id = c.id
            GROUP BY c.project, c.id, c.type, c.name;
        COMMENT ON VIEW {s}.entity_documents IS
            'One row per canonical entity: in how many documents and how often it is mentioned.';
        """,
    ),
    (
        4,
        "object versions",
        """
        CREATE TABLE {s}.object_versions (
            project text NOT NULL,
            source text NOT NULL,
            etag text NOT NULL,
            size_bytes bigint NOT NULL,
            sha256 text NOT NULL,
            format text NOT NULL,
            seen_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (project, source)
        );
        COMMENT ON TABLE {s}.object_versions IS
            'The S3 objects intake hashed: (ETag, size) -> sha256 and format, so a re-run '
            'downloads only objects whose ETag or size changed (accelerated/s3_intake.py).';
        """,
    ),
    (
        5,
        "canonical aliases",
        """
        CREATE TABLE {s}.canonical_aliases (
            alias_id uuid PRIMARY KEY,
            project text NOT NULL,
            canonical_id uuid NOT NULL,
            type text NOT NULL,
            alias_key text NOT NULL,
            canonical_key text NOT NULL,
            resolver text NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX canonical_aliases_project_idx ON {s}.canonical_aliases (project);
        CREATE INDEX canonical_aliases_canonical_idx ON {s}.canonical_aliases (canonical_id);
        COMMENT ON TABLE {s}.canonical_aliases IS
            'Cross-document merges (RESOLUTION): alias_id, a canonical entity, is the same '
            'entity as canonical_id, its representative (the least key of the merged set). '
            'Recomputed over all of the project''s canonical entities at the end of a batch, '
            'from per-pair decisions, so the rows never depend on document order. Mentions '
            'keep their own canonical_id; read resolved_entities for the merged identity.';

        CREATE VIEW {s}.resolved_entities AS
            SELECT c.id, c.project, c.type, c.key, c.name,
                   coalesce(a.canonical_id, c.id) AS resolved_id
            FROM {s}.canonical_entities c
            LEFT JOIN {s}.canonical_aliases a ON a.alias_id = c.id;
        COMMENT ON VIEW {s}.resolved_entities IS
            'Every canonical entity with the id it resolves to (itself when not merged).';
        """,
    ),
    (
        6,
        "derived edges",
        """
        ALTER TABLE {s}.relationships RENAME TO stored_relationships;
        ALTER INDEX {s}.relationships_pkey RENAME TO stored_relationships_pkey;
        ALTER INDEX {s}.relationships_document_idx RENAME TO stored_relationships_document_idx;
        ALTER INDEX {s}.relationships_source_idx RENAME TO stored_relationships_source_idx;
        ALTER INDEX {s}.relationships_target_idx RENAME TO stored_relationships_target_idx;
        DELETE FROM {s}.stored_relationships
            WHERE type IN ('HAS_CHUNK', 'MENTIONS', 'REFERS_TO');
        COMMENT ON TABLE {s}.stored_relationships IS
            'The edges computed by the relate stage (CO_OCCURS_WITH); read relationships, '
            'which adds the edges that chunks and entity_mentions already state.';
        CREATE INDEX entity_mentions_chunk_idx ON {s}.entity_mentions (chunk_id);
        COMMENT ON INDEX {s}.entity_mentions_chunk_idx IS
            'Walks CHUNK -MENTIONS-> MENTION edges of the relationships view by source.';

        CREATE VIEW {s}.relationships AS
            SELECT id, project, document_id, type, source_type, source_id, target_type,
                   target_id, weight
            FROM {s}.stored_relationships
            UNION ALL
            SELECT md5('rel:HAS_CHUNK:' || c.document_id::text || ':' || c.id::text)::uuid,
                   c.project, c.document_id, 'HAS_CHUNK'::text, 'DOCUMENT'::text,
                   c.document_id, 'CHUNK'::text, c.id, 1.0::double precision
            FROM {s}.chunks c
            UNION ALL
            SELECT md5('rel:MENTIONS:' || m.chunk_id::text || ':' || m.id::text)::uuid,
                   m.project, m.document_id, 'MENTIONS'::text, 'CHUNK'::text,
                   m.chunk_id, 'MENTION'::text, m.id, 1.0::double precision
            FROM {s}.entity_mentions m
            UNION ALL
            SELECT md5('rel:REFERS_TO:' || m.id::text || ':' || m.canonical_id::text)::uuid,
                   m.project, m.document_id, 'REFERS_TO'::text, 'MENTION'::text,
                   m.id, 'CANONICAL'::text, m.canonical_id, 1.0::double precision
            FROM {s}.entity_mentions m
            WHERE m.canonical_id IS NOT NULL;
        COMMENT ON VIEW {s}.relationships IS
            'Every graph edge: the stored ones (CO_OCCURS_WITH) and the ones derived from '
            'the rows that state them: DOCUMENT -HAS_CHUNK-> CHUNK (chunks.document_id), '
            'CHUNK -MENTIONS-> MENTION (entity_mentions.chunk_id), MENTION -REFERS_TO-> '
            'CANONICAL (entity_mentions.canonical_id). A derived edge''s id is '
            'md5(''rel:'' || type || '':'' || source_id || '':'' || target_id)::uuid '
            '(accelerated.ids.derived_relationship_id). Filters on source_id, target_id, '
            'document_id, project and type reach each branch''s indexes.';
        """,
    ),
    (
        7,
        "field roles",
        """
        COMMENT ON COLUMN {s}.entity_mentions.role IS
            'Which field the mention is, where the document says so: a party''s role '
            '(plaintiff, defendant, petitioner, respondent, appellant, appellee, debtor, '
            'creditor, contract party); a date''s (filed, entered, terminated, decided, '
            'argued, received, effective, agreement, executed); a docket number''s (own, '
            'related, lower_court); a judge''s (assigned, referred, presiding, trial, '
            'author, panel). NULL: a mention of no field (a date in an entry''s text).';
        COMMENT ON VIEW {s}.canonical_entity_roles IS
            'Roles of a canonical entity over all its mentions (a party''s sides, a '
            'judge''s assignments, a date''s fields): derived, so it is the same whatever '
            'order documents were written in and follows re-processing.';
        """,
    ),
    (
        8,
        "lz4 for large values",
        # A document's texts and pages and its chunks' texts are TOASTed and compressed
        # by the server on every write. pglz, the default, costs about 1.6 ms of server
        # CPU per 74 KB of legal text (the writer's hot path); lz4 about 0.35 ms, for
        # values about 12 % larger. Only where the server was built with lz4
        # (PostgreSQL 14+; Debian's, the official images' and Supabase's are): elsewhere
        # nothing changes. New values only: existing rows keep theirs until rewritten.
        """
        DO $$
        BEGIN
          IF current_setting('server_version_num')::int >= 140000 AND EXISTS (
              SELECT 1 FROM pg_settings
              WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)) THEN
            EXECUTE 'ALTER TABLE {s}.documents '
              'ALTER COLUMN raw_pages SET COMPRESSION lz4, '
              'ALTER COLUMN pages SET COMPRESSION lz4, '
              'ALTER COLUMN metadata SET COMPRESSION lz4, '
              'ALTER COLUMN raw_text SET COMPRESSION lz4, '
              'ALTER COLUMN text SET COMPRESSION lz4';
            EXECUTE 'ALTER TABLE {s}.chunks ALTER COLUMN text SET COMPRESSION lz4';
          END IF;
        END $$;
        """,
    ),
)


def quote_schema(schema: str) -> str:
    """Schema names are interpolated into SQL, so only plain identifiers pass."""
    if not _SCHEMA_RE.fullmatch(schema):
        raise ValueError(f"schema {schema!r} must be a lower-case SQL identifier")
    return f'"{schema}"'


async def migrate(pool: asyncpg.Pool, schema: str) -> None:
    """Create the schema and apply missing migrations; a no-op when up to date."""
    s = quote_schema(schema)
    async with pool.acquire() as conn, conn.transaction():
        # Lock first: even CREATE SCHEMA IF NOT EXISTS races with itself.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"lp-migrate:{schema}"
        )
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.schema_migrations ("
            "version integer PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r[0] for r in await conn.fetch(f"SELECT version FROM {s}.schema_migrations")}
        for version, name, sql in MIGRATIONS:
            if version in done:
                continue
            await conn.execute(sql.replace("{s}", s))
            await conn.execute(
                f"INSERT INTO {s}.schema_migrations (version, name) VALUES ($1, $2)",
                version,
                name,
            )
