-- Users auth reported deleted. Events can arrive out of order (a `user.registered` that failed and
-- was retried may come after the `user.deleted` of the same user); a tombstone keeps such a late
-- registration from bringing the profile back. User ids are UUIDs and never reused.
CREATE TABLE profile.deleted_users (
    user_id TEXT PRIMARY KEY,
    deleted_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
