-- A user's payment list (GET /payments) is newest first by (created_at, id), of the payments the
-- user sent, received, or both. The seed's single-column indexes find a user's rows but not in that
-- order, so the first page of a user with many payments gathered and sorted all of them (or walked
-- every user's payments by date). With these, each side is one ordered index range and a page reads
-- only its own rows; "both" is the merge of the two ranges (store/payments.rs `list`).
-- In the shared topology these are additions to the legacy table, like auth's and admin's indexes.
CREATE INDEX IF NOT EXISTS "payments_sender_id_created_at_idx"
    ON "payments" ("sender_id", "created_at" DESC, "id" DESC);
CREATE INDEX IF NOT EXISTS "payments_recipient_id_created_at_idx"
    ON "payments" ("recipient_id", "created_at" DESC, "id" DESC);
