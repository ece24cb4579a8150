-- References to users that the database itself cleared: legacy's audit_logs_user_id_fkey is
-- ON DELETE SET NULL, so deleting a user (on the shared database, or a rollback writing back a
-- user deleted after cutover) rewrites audit rows admin chained. The chain's canonical form reads
-- the user id from here when the row's is NULL, so those rows still verify.
CREATE TABLE admin.audit_cleared_refs (
    audit_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    cleared_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Only the foreign key's action is recorded: that column alone cleared, and the user it named
-- gone (with the key in place, a row can point to a missing user only as the key deletes it).
-- A statement clearing a reference by hand, or any clearing where there is no users table (the
-- split admin_db), stays a change the chain finds.
CREATE FUNCTION admin.record_cleared_ref() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    gone BOOLEAN;
BEGIN
    IF OLD.user_id IS NOT NULL AND NEW.user_id IS NULL
       AND (to_jsonb(NEW) - 'user_id') = (to_jsonb(OLD) - 'user_id')
       AND to_regclass('public.users') IS NOT NULL THEN
        EXECUTE 'SELECT NOT EXISTS (SELECT 1 FROM public.users WHERE id = $1)'
            INTO gone USING OLD.user_id;
        IF gone THEN
            INSERT INTO admin.audit_cleared_refs (audit_id, user_id) VALUES (OLD.id, OLD.user_id)
            ON CONFLICT (audit_id) DO NOTHING;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER audit_logs_cleared_ref AFTER UPDATE OF user_id ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION admin.record_cleared_ref();
