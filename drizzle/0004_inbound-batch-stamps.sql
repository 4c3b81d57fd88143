-- Inbound group commit (src/services/inbound.ts): takes the inbound locks of the organizations of a
-- batch, in one order, then answers each organization's first free stamp (later than its last inbound
-- message). VOLATILE: its query runs in a snapshot taken after the locks, so it sees every earlier batch,
-- even from inside the single statement that writes the batch.
CREATE OR REPLACE FUNCTION inbound_batch_stamps(orgs uuid[]) RETURNS TABLE (org uuid, base timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  o uuid;
BEGIN
  FOR o IN SELECT DISTINCT u FROM unnest(orgs) AS u ORDER BY u LOOP
    PERFORM pg_advisory_xact_lock(6925, hashtext(o::text));
  END LOOP;
  RETURN QUERY
    SELECT s.u, greatest(
      clock_timestamp()::timestamptz(3),
      (SELECT max(m.created_at) FROM messages m WHERE m.organization_id = s.u AND m.direction = 'incoming') + interval '1 millisecond'
    )
    FROM (SELECT DISTINCT unnest(orgs) AS u) s;
END
$$;
