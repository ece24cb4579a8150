-- The seed's payments models (section 3.2), exactly as the legacy database holds them
-- (schema/legacy-schema.sql), without the foreign keys to `users` (another service's data).
-- Idempotent: in the shared topology this runs on the legacy database, where they already exist.
DO $$ BEGIN
    CREATE TYPE "PaymentStatus" AS ENUM ('pending', 'processing', 'completed', 'failed', 'cancelled');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
DO $$ BEGIN
    CREATE TYPE "PaymentType" AS ENUM ('instant', 'scheduled', 'recurring');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE TABLE IF NOT EXISTS "payments" (
    "id" TEXT NOT NULL,
    "sender_id" TEXT NOT NULL,
    "recipient_id" TEXT,
    "amount" DECIMAL(10,2) NOT NULL,
    "currency" TEXT NOT NULL DEFAULT 'USD',
    "status" "PaymentStatus" NOT NULL,
    "type" "PaymentType" NOT NULL,
    "description" TEXT,
    "metadata" JSONB,
    "psp_transaction_id" TEXT,
    "psp_status" TEXT,
    "failure_reason" TEXT,
    "completed_at" TIMESTAMP(3),
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL,
    CONSTRAINT "payments_pkey" PRIMARY KEY ("id")
);
CREATE INDEX IF NOT EXISTS "payments_sender_id_idx" ON "payments"("sender_id");
CREATE INDEX IF NOT EXISTS "payments_recipient_id_idx" ON "payments"("recipient_id");
CREATE INDEX IF NOT EXISTS "payments_status_idx" ON "payments"("status");
CREATE INDEX IF NOT EXISTS "payments_created_at_idx" ON "payments"("created_at");

CREATE TABLE IF NOT EXISTS "payment_transactions" (
    "id" TEXT NOT NULL,
    "payment_id" TEXT NOT NULL,
    "status" "PaymentStatus" NOT NULL,
    "status_message" TEXT,
    "psp_transaction_id" TEXT,
    "metadata" JSONB,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "payment_transactions_pkey" PRIMARY KEY ("id")
);
CREATE INDEX IF NOT EXISTS "payment_transactions_payment_id_idx" ON "payment_transactions"("payment_id");
CREATE INDEX IF NOT EXISTS "payment_transactions_created_at_idx" ON "payment_transactions"("created_at");

-- Stays in payments_db: both ends belong to the payments service.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'payment_transactions_payment_id_fkey'
                   AND conrelid = 'payment_transactions'::regclass) THEN
        ALTER TABLE "payment_transactions" ADD CONSTRAINT "payment_transactions_payment_id_fkey"
            FOREIGN KEY ("payment_id") REFERENCES "payments"("id") ON DELETE CASCADE ON UPDATE CASCADE;
    END IF;
END $$;
