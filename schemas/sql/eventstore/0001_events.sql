-- kubegate event store: one append-only log per service database.
-- position: gap-free, commit-ordered position in the whole log (appends are serialized).
-- (stream, sequence): optimistic concurrency per aggregate stream.
CREATE TABLE kubegate_events (
    position       BIGINT      PRIMARY KEY CHECK (position > 0),
    id             UUID        NOT NULL UNIQUE,
    stream         TEXT        NOT NULL CHECK (stream <> ''),
    sequence       BIGINT      NOT NULL CHECK (sequence > 0),
    type           TEXT        NOT NULL,
    version        INTEGER     NOT NULL CHECK (version > 0),
    subject        TEXT        NOT NULL,
    occurred_at    TIMESTAMPTZ NOT NULL,
    actor          JSONB       NOT NULL,
    correlation_id TEXT        NOT NULL,
    payload        JSONB       NOT NULL,
    UNIQUE (stream, sequence)
);

-- Events committed but not yet acknowledged by JetStream. Written in the same transaction as
-- the events; rows are deleted once the bus has stored the event.
CREATE TABLE kubegate_outbox (
    position BIGINT PRIMARY KEY REFERENCES kubegate_events (position)
);

-- The log is append-only: no update, no delete, no truncate.
CREATE FUNCTION kubegate_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'kubegate_events is append-only (% refused)', TG_OP;
END;
$$;

CREATE TRIGGER kubegate_events_no_update_delete
    BEFORE UPDATE OR DELETE ON kubegate_events
    FOR EACH ROW EXECUTE FUNCTION kubegate_events_append_only();

CREATE TRIGGER kubegate_events_no_truncate
    BEFORE TRUNCATE ON kubegate_events
    FOR EACH STATEMENT EXECUTE FUNCTION kubegate_events_append_only();
