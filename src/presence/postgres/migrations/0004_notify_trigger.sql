-- v4: every history row announces itself on the change bus. The notice is sent by the
-- database at commit (never for a rollback), from one trigger, so every writer of history
-- (today's and any later one) wakes the other nodes' listeners, and a write costs no extra
-- round trip for it. The payload is '<extension> <version> <history id>' (postgres/listen.rs).
CREATE FUNCTION history_announce() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('starcode_presence', NEW.extension || ' ' || NEW.version || ' ' || NEW.id);
    RETURN NULL;
END;
$$;
CREATE TRIGGER history_announce AFTER INSERT ON history
    FOR EACH ROW EXECUTE FUNCTION history_announce();
