-- The auth service's own tables, in its schema `auth`, away from the legacy tables.

-- Emails are unique regardless of case, enforced by the service (legacy rows may differ only by
-- case, so no unique index can hold it). This index makes the case-insensitive lookup of login and
-- registration an index scan; it is the one addition to the legacy contract on `users`.
CREATE INDEX IF NOT EXISTS "users_email_lower_idx" ON "users"(lower("email"));

-- Hashes of refresh tokens already rotated or replaced: presenting one again is token reuse,
-- which revokes every refresh token of its user. Kept until the token would have expired.
CREATE TABLE auth.rotated_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_at TIMESTAMP(3) NOT NULL,
    rotated_at TIMESTAMP(3) NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX rotated_refresh_tokens_expires_at_idx ON auth.rotated_refresh_tokens(expires_at);
