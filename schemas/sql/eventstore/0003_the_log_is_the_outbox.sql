-- The log is its own outbox. The relay publishes the events after the last position the
-- stream holds (it reads that position from the stream's last message when it takes the lead,
-- and keeps it as the bus acknowledges each batch), in position order; positions are handed
-- out and committed in the same order (the append lock), so reading "after position p" never
-- passes over an event that commits later. An append therefore writes no outbox row and the
-- relay deletes none: per event, one row, one index entry and one committed deletion less.
--
-- Same signature and answers as in 0002; the only change is that no outbox row is written.
-- The relay is still woken by the notification.
CREATE OR REPLACE FUNCTION kubegate_append(
    lock_key       BIGINT,
    a_streams      TEXT[],
    a_expected     BIGINT[],
    a_counts       INTEGER[],
    e_ids          UUID[],
    e_types        TEXT[],
    e_versions     INTEGER[],
    e_subjects     TEXT[],
    e_times        TIMESTAMPTZ[],
    e_actors       TEXT[],
    e_correlations TEXT[],
    e_payloads     TEXT[],
    OUT first_position    BIGINT,
    OUT sequences         BIGINT[],
    OUT conflict_stream   TEXT,
    OUT conflict_expected BIGINT,
    OUT conflict_actual   BIGINT,
    OUT already_stored    BOOLEAN
) LANGUAGE plpgsql AS $$
DECLARE
    last_position BIGINT;
    seen          TEXT[] := '{}';
    versions      BIGINT[] := '{}';
    e_streams     TEXT[] := '{}';
    k             INTEGER;
    at_version       BIGINT;
    first_event   INTEGER := 1;
BEGIN
    sequences := '{}';
    already_stored := false;
    PERFORM pg_advisory_xact_lock(lock_key);
    -- A volatile function's statements each take a fresh snapshot: this sees every append
    -- committed before the lock was granted.
    SELECT COALESCE(MAX(position), 0) INTO last_position FROM kubegate_events;
    FOR i IN 1 .. COALESCE(array_length(a_streams, 1), 0) LOOP
        k := array_position(seen, a_streams[i]);
        IF k IS NULL THEN
            SELECT COALESCE(MAX(sequence), 0) INTO at_version FROM kubegate_events WHERE stream = a_streams[i];
            seen := seen || a_streams[i];
            versions := versions || at_version;
            k := array_length(seen, 1);
        END IF;
        at_version := versions[k];
        IF a_expected[i] >= 0 AND a_expected[i] <> at_version THEN
            conflict_stream := a_streams[i];
            conflict_expected := a_expected[i];
            conflict_actual := at_version;
            already_stored := a_counts[i] > 0
                AND EXISTS (SELECT 1 FROM kubegate_events WHERE id = e_ids[first_event]);
            RETURN;
        END IF;
        FOR j IN 1 .. a_counts[i] LOOP
            sequences := sequences || (at_version + j);
            e_streams := e_streams || a_streams[i];
        END LOOP;
        versions[k] := at_version + a_counts[i];
        first_event := first_event + a_counts[i];
    END LOOP;
    first_position := last_position + 1;
    INSERT INTO kubegate_events
        (position, id, stream, sequence, type, version, subject, occurred_at, actor, correlation_id, payload)
    SELECT last_position + x.n, x.i, x.s, x.q, x.t, x.v, x.sj, x.o, x.a::jsonb, x.c, x.pl::jsonb
    FROM UNNEST(e_ids, e_streams, sequences, e_types, e_versions, e_subjects, e_times, e_actors,
                e_correlations, e_payloads) WITH ORDINALITY AS x(i, s, q, t, v, sj, o, a, c, pl, n);
    PERFORM pg_notify('kubegate_outbox', '');
END;
$$;

DROP TABLE kubegate_outbox;
