-- Every filter of GET /admin/audit-logs (and of its export) reads its rows newest first as one
-- index range: a keyset page starts at its cursor in the index whatever its depth, instead of
-- collecting and sorting every matching row for each page (a bitmap scan on `action`, then a
-- top-N sort: quadratic over the pages of an export). The seed's single-column indexes stay.
CREATE INDEX IF NOT EXISTS "audit_logs_created_at_id_idx"
    ON "audit_logs" ("created_at" DESC, "id" DESC);
CREATE INDEX IF NOT EXISTS "audit_logs_user_id_created_at_idx"
    ON "audit_logs" ("user_id", "created_at" DESC, "id" DESC);
CREATE INDEX IF NOT EXISTS "audit_logs_action_created_at_idx"
    ON "audit_logs" ("action", "created_at" DESC, "id" DESC);
CREATE INDEX IF NOT EXISTS "audit_logs_resource_type_created_at_idx"
    ON "audit_logs" ("resource_type", "created_at" DESC, "id" DESC);
CREATE INDEX IF NOT EXISTS "audit_logs_resource_id_created_at_idx"
    ON "audit_logs" ("resource_id", "created_at" DESC, "id" DESC);
