//! The generating SQL: one statement per batch of a table (parents with their children through
//! data-modifying CTEs), and the fixed statements of the special rows. Each is a `&'static str`.

/// The history rows of the payments in CTE `p`: `pending` when created, then the final status.
/// Shared by the special and the generated payments; a macro so that `concat!` can glue it to
/// their CTEs and the statements stay `&'static str` (sqlx's mark of SQL not built from input).
macro_rules! history_sql {
    () => {
        r#"
INSERT INTO payment_transactions (id, payment_id, status, status_message, psp_transaction_id, metadata, created_at)
SELECT pg_temp.uid('payment_transactions:' || p.id || ':' || s.step::text), p.id,
       CASE s.step WHEN 1 THEN 'pending' ELSE p.status END,
       CASE WHEN s.step = 1 THEN 'Payment created'
            WHEN p.status = 'completed' THEN 'Payment captured'
            WHEN p.status = 'failed' THEN p.failure_reason
            WHEN p.status = 'cancelled' THEN 'Cancelled by the sender'
            END, -- processing: POC-2 wrote no message while waiting for the PSP
       CASE WHEN s.step = 2 THEN p.psp_transaction_id END,
       CASE WHEN s.step = 1 THEN jsonb_build_object('amount', p.amount, 'currency', p.currency)
            ELSE p.metadata END,
       CASE WHEN s.step = 1 THEN p.created_at ELSE coalesce(p.completed_at, p.updated_at) END
FROM p CROSS JOIN (VALUES (1), (2)) AS s(step)
WHERE s.step = 1 OR p.status <> 'pending'
ORDER BY 1
"#
    };
}

/// A demo user ($1 is its special row number); its profile is in [`SPECIAL_USERS_SQL`].
pub(crate) const DEMO_USER_SQL: &str = r#"
INSERT INTO users (id, email, password_hash, name, role, email_verified, created_at, updated_at)
VALUES (pg_temp.user_id($1), $2, $3,
        CASE $4 WHEN 'ADMIN' THEN 'Ada Admin' WHEN 'VENDOR' THEN 'Bob Vendor' ELSE 'Alice Customer' END,
        $4::"UserRole", true, timestamp '2022-01-10 09:00:00.000' - $1 * interval '1 day',
        timestamp '2024-06-01 12:30:45.678' - $1 * interval '1 hour')
"#;

/// The hard-case users (-4..-12), the special tokens and profiles. The demo users are -1..-3.
/// `U&'...'` literals spell combining characters visibly (`\0308` is U+0308).
pub(crate) const SPECIAL_USERS_SQL: &str = r#"
INSERT INTO users (id, email, password_hash, name, role, email_verified, created_at, updated_at) VALUES
 -- Emails that differ only by case: the legacy unique index is case-sensitive.
 (pg_temp.user_id(-4), 'Case@legacy.test', pg_temp.pw(-4), 'Casey Upper', 'CUSTOMER', true,
  '2022-03-01 10:00:00.000', '2022-03-01 10:00:00.000'),
 (pg_temp.user_id(-5), 'case@legacy.test', pg_temp.pw(-5), 'casey lower', 'CUSTOMER', false,
  '2022-03-02 10:00:00.001', '2023-03-02 10:00:00.999'),
 -- The same visible email composed (NFC) and decomposed (NFD): two distinct rows.
 (pg_temp.user_id(-6), 'zoë@exämple.jp', pg_temp.pw(-6), 'Zoë Ångström-Núñez 😀', 'CUSTOMER', false,
  '2022-04-01 08:15:30.123', '2022-05-01 08:15:30.456'),
 (pg_temp.user_id(-7), U&'zoe\0308@exa\0308mple.jp', pg_temp.pw(-7), U&'Zoe\0308 A\030Angstro\0308m (decomposed)', 'VENDOR', true,
  '2022-04-02 08:15:30.123', '2022-04-02 08:15:30.123'),
 (pg_temp.user_id(-8), '山田.太郎@例え.テスト', pg_temp.pw(-8), '山田 太郎（やまだ たろう）', 'VENDOR', true,
  '2022-06-15 00:00:00.000', '2024-01-01 00:00:00.000'),
 (pg_temp.user_id(-9), 'مريم@مثال.اختبار', pg_temp.pw(-9), 'مريم العربية — מרים', 'ADMIN', true,
  '2022-07-01 12:00:00.500', '2022-07-01 12:00:00.500'),
 (pg_temp.user_id(-10), 'o''brien+%_\x@legacy.test', pg_temp.pw(-10), 'Robert''); DROP TABLE users; -- \ %_ "quoted"', 'CUSTOMER', true,
  '2023-01-01 00:00:00.000', '2023-01-01 00:00:00.000'),
 -- The smallest and largest timestamps a client is likely to meet.
 (pg_temp.user_id(-11), 'ancient@legacy.test', pg_temp.pw(-11), 'Ancient Timestamps', 'CUSTOMER', false,
  '0001-01-01 00:00:00.001', '0001-01-01 00:00:00.001'),
 (pg_temp.user_id(-12), 'future@legacy.test', pg_temp.pw(-12), 'Future Timestamps', 'VENDOR', false,
  '9999-12-31 23:59:59.999', '9999-12-31 23:59:59.999');

INSERT INTO refresh_tokens (id, user_id, token, expires_at, created_at) VALUES
 (pg_temp.uid('refresh_tokens:-1'), pg_temp.user_id(-2), 'rt_alice_demo_0123456789abcdef',
  '9999-12-31 23:59:59.999', '2024-06-01 12:30:45.678'),
 (pg_temp.uid('refresh_tokens:-2'), pg_temp.user_id(-3), 'rt_bob_expired',
  '0001-01-08 00:00:00.001', '0001-01-01 00:00:00.001'),
 (pg_temp.uid('refresh_tokens:-3'), pg_temp.user_id(-10), 'tok''; DROP TABLE refresh_tokens; -- \ % _ ✓ é',
  '9999-12-31 23:59:59.999', '9999-12-31 23:59:59.999'),
 -- Tokens that differ only by case.
 (pg_temp.uid('refresh_tokens:-4'), pg_temp.user_id(-4), 'rt_CaseToken', '2030-01-01 00:00:00.000', '2024-01-01 00:00:00.000'),
 (pg_temp.uid('refresh_tokens:-5'), pg_temp.user_id(-5), 'rt_casetoken', '2030-01-01 00:00:00.000', '2024-01-01 00:00:00.000');

INSERT INTO user_profiles (id, user_id, avatar_url, phone, address, bio, preferences, created_at, updated_at) VALUES
 -- Every nullable column NULL.
 (pg_temp.profile_id(-1), pg_temp.user_id(-1), NULL, NULL, NULL, NULL, NULL,
  '2022-01-09 09:00:00.000', '2022-01-09 09:00:00.000'),
 (pg_temp.profile_id(-2), pg_temp.user_id(-2), 'https://cdn.legacy.test/avatars/alice.png', '+1 555 0100',
  '1 Infinite Loop, Cupertino, CA 95014, USA', 'Alice 👩‍💻 pays Bob.',
  '{"theme": "dark", "language": "fr", "greeting": "Bonjour, ça va ? 你好 👋",
    "notifications": {"email": true, "sms": false, "channels": ["push", {"name": "webhook", "url": "https://hooks.legacy.test/ä"}]}}',
  '2022-01-08 09:00:00.000', '2024-06-01 12:30:45.678'),
 -- JSON null, as opposed to SQL NULL.
 (pg_temp.profile_id(-3), pg_temp.user_id(-3), NULL, '+44 20 7946 0958', NULL, NULL, 'null',
  '2022-01-07 09:00:00.000', '2022-01-07 09:00:00.000'),
 -- A 10 KB bio of multi-byte characters.
 (pg_temp.profile_id(-6), pg_temp.user_id(-6), 'https://cdn.legacy.test/avatars/zo%C3%AB.png', '+33 6 12 34 56 78',
  '12 Rue de l''Église, 75004 Paris',
  left(repeat('Zoë écrit du code 🚀 — 日本語のテキスト — مرحبا بالعالم. ', 300), 10000),
  '{"theme": "light", "ünïcödé": {"ключ": "значение", "emoji": "🎉", "list": [1, 2.5, -3e-7]}}',
  '2022-04-01 08:15:30.124', '2022-05-01 08:15:30.456'),
 (pg_temp.profile_id(-8), pg_temp.user_id(-8), NULL, '+81 3-1234-5678', '〒100-0001 東京都千代田区千代田1-1', '寿司が好きです。',
  '{"language": "ja", "表示": {"テーマ": "ダーク"}}', '2022-06-15 00:00:01.000', '2024-01-01 00:00:00.000'),
 (pg_temp.profile_id(-9), pg_temp.user_id(-9), NULL, NULL, 'شارع الملك فهد، الرياض — רחוב הרצל 1, תל אביב',
  'אני כותבת מימין לשמאל. أكتب من اليمين إلى اليسار.', NULL, '2022-07-01 12:00:00.500', '2022-07-01 12:00:00.500'),
 (pg_temp.profile_id(-10), pg_temp.user_id(-10), 'https://cdn.legacy.test/a.png?x=1&y=%27', '+1 (555) 010-9999',
  'C:\Users\robert\ ; ''quoted'' "double"',
  '''; DROP TABLE user_profiles; -- 100% _wild_ \n is not a newline \\ $1 $$',
  '{"sql": "''; DROP TABLE users; --", "path": "C:\\temp\\x", "quote": "\"", "like": "%_"}',
  '2023-01-01 00:00:00.000', '2023-01-01 00:00:00.000'),
 (pg_temp.profile_id(-11), pg_temp.user_id(-11), NULL, NULL, NULL, 'Old.', '{}', '0001-01-01 00:00:00.001', '0001-01-01 00:00:00.001'),
 (pg_temp.profile_id(-12), pg_temp.user_id(-12), NULL, NULL, NULL, 'New.', '[]', '9999-12-31 23:59:59.999', '9999-12-31 23:59:59.999');
"#;

/// The special payments (-1..-10) with their histories: Alice and Bob's, one with every
/// nullable column NULL, JSON null, extreme amounts, texts and timestamps, every status and type.
pub(crate) const SPECIAL_PAYMENTS_SQL: &str = concat!(
    r#"
WITH p AS (
INSERT INTO payments (id, sender_id, recipient_id, amount, currency, status, type, description, metadata,
                      psp_transaction_id, psp_status, failure_reason, completed_at, created_at, updated_at) VALUES
 (pg_temp.payment_id(-1), pg_temp.user_id(-2), pg_temp.user_id(-3), 0.01, 'USD', 'completed', 'instant',
  'Coffee ☕ — thanks Bob!', '{"note": "first demo payment", "tags": ["demo", "☕"]}',
  'pi_demo_0001', 'succeeded', NULL, '2023-05-01 12:00:05.123', '2023-05-01 12:00:00.001', '2023-05-01 12:00:05.123'),
 (pg_temp.payment_id(-2), pg_temp.user_id(-3), pg_temp.user_id(-2), 99999999.99, 'EUR', 'failed', 'scheduled',
  'Supplier invoice – été 2023 — 請求書 №42',
  '{"invoice": {"number": "FA-2023-0042", "lines": [{"label": "Conseil — été", "amount": 99999999.99}, {"label": "税金", "amount": 0}]},
    "notes": ["Überweisung", "🧾"]}',
  'pi_demo_0002', 'insufficient_funds', 'Solde insuffisant — 残高不足 ❌', NULL, '2023-06-01 09:00:00.000', '2023-06-01 09:00:02.500'),
 (pg_temp.payment_id(-3), pg_temp.user_id(-2), pg_temp.user_id(-3), 42.00, 'GBP', 'pending', 'recurring',
  'Monthly subscription 🔁', '{"interval": "month", "next": {"day": 1, "month": null}}',
  NULL, NULL, NULL, NULL, '2024-06-01 00:00:00.000', '2024-06-01 00:00:00.000'),
 -- Every nullable column NULL.
 (pg_temp.payment_id(-4), pg_temp.user_id(-2), NULL, 10.00, 'USD', 'pending', 'instant',
  NULL, NULL, NULL, NULL, NULL, NULL, '2024-06-02 00:00:00.000', '2024-06-02 00:00:00.000'),
 -- JSON null metadata; right-to-left description.
 (pg_temp.payment_id(-5), pg_temp.user_id(-6), pg_temp.user_id(-8), 1234.56, 'EUR', 'processing', 'instant',
  'תשלום עבור שכירות — دفع الإيجار', 'null',
  'pi_special_5', 'processing', NULL, NULL, '2024-02-29 23:59:59.999', '2024-03-01 00:00:00.000'),
 -- A 100 KB description; deeply nested metadata.
 (pg_temp.payment_id(-6), pg_temp.user_id(-7), pg_temp.user_id(-9), 500.00, 'USD', 'cancelled', 'scheduled',
  left(repeat('Long description — 長い説明 — وصف طويل — 🧾 ', 3000), 100000),
  '{"a": {"b": {"c": {"d": {"e": {"f": ["deep", {"g": "ü"}, [[["🪆"]]]]}}}}}}',
  'pi_special_6', 'canceled', NULL, NULL, '2023-12-24 18:00:00.000', '2023-12-24 18:05:00.000'),
 -- SQL metacharacters.
 (pg_temp.payment_id(-7), pg_temp.user_id(-10), pg_temp.user_id(-4), 100.00, 'GBP', 'completed', 'instant',
  '''; DROP TABLE users; -- \ \\ "double" ''single'' 100% _under_ $1 $$ %s {} E''\n''',
  '{"q": "''; DROP TABLE payments; --", "like": "%_", "backslash": "\\", "newline": "a\nb"}',
  'pi_special_7', 'succeeded', NULL, '2023-03-03 03:03:04.004', '2023-03-03 03:03:03.003', '2023-03-03 03:03:04.004'),
 (pg_temp.payment_id(-8), pg_temp.user_id(-11), pg_temp.user_id(-12), 1.00, 'USD', 'completed', 'recurring',
  'Ancient', NULL,
  'pi_special_8', 'succeeded', NULL, '0001-01-01 00:00:00.002', '0001-01-01 00:00:00.001', '0001-01-01 00:00:00.002'),
 (pg_temp.payment_id(-9), pg_temp.user_id(-12), pg_temp.user_id(-11), 2.00, 'EUR', 'completed', 'scheduled',
  'Future', '[]',
  'pi_special_9', 'succeeded', NULL, '9999-12-31 23:59:59.999', '9999-12-31 23:59:59.998', '9999-12-31 23:59:59.999'),
 -- Combining characters, ZWJ sequences and flags: one glyph, several code points.
 (pg_temp.payment_id(-10), pg_temp.user_id(-7), pg_temp.user_id(-6), 19.99, 'EUR', 'completed', 'instant',
  U&'Zoe\0308 cafe\0301 A\030A \+01F469\200D\+01F469\200D\+01F467 \+01F1EF\+01F1F5',
  '{"name": "Zoe\u0308", "flag": "🇯🇵", "family": "👩‍👩‍👧"}',
  'pi_special_10', 'succeeded', NULL, '2023-08-08 08:08:09.000', '2023-08-08 08:08:08.808', '2023-08-08 08:08:09.000')
RETURNING *
)
"#,
    history_sql!()
);

/// The special audit log entries: every nullable column NULL, JSON null, escapes and big
/// numbers in JSON, SQL metacharacters, extreme timestamps.
pub(crate) const SPECIAL_AUDIT_LOGS_SQL: &str = r#"
INSERT INTO audit_logs (id, user_id, action, resource_type, resource_id, details, ip_address, user_agent, created_at) VALUES
 (pg_temp.uid('audit_logs:-1'), NULL, 'system.maintenance', NULL, NULL, NULL, NULL, NULL, '2023-01-01 00:00:00.000'),
 (pg_temp.uid('audit_logs:-2'), pg_temp.user_id(-2), 'user.login', 'user', pg_temp.user_id(-2), 'null', '203.0.113.7',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15',
  '2024-06-01 12:30:45.678'),
 (pg_temp.uid('audit_logs:-3'), pg_temp.user_id(-6), 'profile.update', 'user_profile', pg_temp.profile_id(-6),
  '{"changes": {"name": {"from": "Zoe", "to": "Zoë 😀"}, "address": {"lines": ["東京都港区", "דירה 5"]}},
    "escaped": "quote \" backslash \\ newline \n tab \t", "big": 12345678901234567890.123456789,
    "empty": {}, "list": [], "flag": false, "nothing": null}',
  '2001:db8::1', 'LegacyApp/1.0 (iPhone; iOS 17.5) アプリ', '2022-05-01 08:15:30.456'),
 (pg_temp.uid('audit_logs:-4'), pg_temp.user_id(-10), 'admin.sql_attempt', 'sql', '''; DROP TABLE audit_logs; --',
  '{"query": "''; DROP TABLE users; --", "like": "100% _x_", "path": "C:\\Windows"}', '::ffff:192.0.2.1',
  'curl/8.5.0 (''; DROP TABLE users; --) \ % _', '2023-01-01 00:00:01.000'),
 (pg_temp.uid('audit_logs:-5'), pg_temp.user_id(-11), 'user.register', 'user', pg_temp.user_id(-11),
  '{"source": "ancient"}', '0.0.0.0', NULL, '0001-01-01 00:00:00.001'),
 (pg_temp.uid('audit_logs:-6'), pg_temp.user_id(-12), 'user.register', 'user', pg_temp.user_id(-12),
  '{"source": "future"}', '255.255.255.255', NULL, '9999-12-31 23:59:59.999'),
 (pg_temp.uid('audit_logs:-7'), pg_temp.user_id(-6), 'payment.create', 'payment', pg_temp.payment_id(-5),
  '{"amount": 1234.56, "currency": "EUR", "وصف": "دفع الإيجار"}', '198.51.100.23',
  'Mozilla/5.0 (Linux; Android 14) مرحبا 你好', '2024-02-29 23:59:59.999');
"#;

/// Generated users $1..=$2, with a profile (all but every tenth) and a refresh token (the even
/// ones), in one statement. Stage `g` materialises each row's hashes once: every later
/// reference is a column, not another md5.
pub(crate) const USERS_SQL: &str = r#"
WITH g AS MATERIALIZED (
    SELECT i, pg_temp.user_id(i) AS id,
           pg_temp.h('users:' || i::text) AS h, pg_temp.h('users:' || i::text || ':2') AS h2,
           pg_temp.h('users:' || i::text || ':3') AS h3, pg_temp.h('users:' || i::text || ':4') AS h4,
           pg_temp.h('users:' || i::text || ':5') AS h5, pg_temp.h('refresh_tokens:' || i::text) AS t
    FROM generate_series($1::bigint, $2::bigint) AS i
), u AS MATERIALIZED (
    SELECT g.*, pg_temp.ts(pg_temp.ms(h, 0, 126230400000)) AS created_at FROM g
), users AS (
    INSERT INTO users (id, email, password_hash, name, role, email_verified, created_at, updated_at)
    SELECT id,
           pg_temp.pick(ARRAY['james','mary','john','patricia','robert','jennifer','michael','linda','david','elizabeth',
                              'jose','zoe','lukasz','siobhan','bjorn','hina','mohammed','priya','chen','fatima',
                              'olga','kwame','ines','mateo'], pg_temp.n(h, 2))
             || '.' || pg_temp.pick(ARRAY['smith','johnson','garcia','muller','martin','rossi','kowalski','tanaka',
                                          'nguyen','khan','silva','novak','okafor','ivanova','dubois'], pg_temp.n(h2, 0))
             || i::text || '@' || pg_temp.pick(ARRAY['gmail.com','yahoo.com','outlook.com','proton.me','example.com',
                                                     'icloud.com','acme-corp.test','shop.example.org'], pg_temp.n(h2, 1)),
           pg_temp.pw(i),
           pg_temp.pick(ARRAY['James','Mary','John','Patricia','Robert','Jennifer','Michael','Linda','David','Elizabeth',
                              'José','Zoë','Łukasz','Siobhán','Björn','陽菜','محمد','Priya','Chen','Fatima',
                              'Olga','Kwame','Inês','Mateo'], pg_temp.n(h, 2))
             || ' ' || pg_temp.pick(ARRAY['Smith','Johnson','García','Müller','Martin','Rossi','Kowalski','田中',
                                          'Nguyễn','Khan','Silva','Novák','Okafor','Иванова','Dubois'], pg_temp.n(h2, 0)),
           CASE WHEN pg_temp.n(h, 3) % 1000 < 5 THEN 'ADMIN'
                WHEN pg_temp.n(h, 3) % 1000 < 125 THEN 'VENDOR'
                ELSE 'CUSTOMER' END::"UserRole",
           pg_temp.n(h2, 2) % 100 < 82,
           created_at,
           created_at + pg_temp.ms(h2, 3, 31536000000) * interval '1 millisecond'
    FROM u ORDER BY id
), profiles AS (
    INSERT INTO user_profiles (id, user_id, avatar_url, phone, address, bio, preferences, created_at, updated_at)
    SELECT pg_temp.profile_id(i), id,
           CASE WHEN pg_temp.n(h3, 0) % 100 < 60
                THEN 'https://cdn.legacy.test/avatars/' || substr(h5, 1, 20) || '.png' END,
           CASE WHEN pg_temp.n(h3, 1) % 100 < 70
                THEN pg_temp.pick(ARRAY['+1 555 ','+44 7700 ','+33 6 ','+49 151 ','+81 90 ','+34 612 '], pg_temp.n(h4, 0))
                     || lpad((pg_temp.n(h4, 1) % 1000000)::text, 6, '0') END,
           CASE WHEN pg_temp.n(h3, 2) % 100 < 50
                THEN (1 + pg_temp.n(h4, 2) % 999)::text || ' '
                     || pg_temp.pick(ARRAY['Main Street','Oak Avenue','Rue de Rivoli','Königsallee','Calle Mayor',
                                           'Baker Street','Via Roma','Shibuya Crossing'], pg_temp.n(h4, 3))
                     || ', ' || pg_temp.pick(ARRAY['Springfield','London','Paris','Düsseldorf','Madrid','Roma',
                                                   '東京','São Paulo'], pg_temp.n(h5, 0)) END,
           CASE WHEN pg_temp.n(h3, 3) % 100 < 30
                THEN pg_temp.pick(ARRAY['Coffee lover ☕','Building things.','Freelance designer 🎨',
                                        'Small business owner','Runner, reader, parent.','Just here to pay rent.',
                                        'Photographe amateur 📷','趣味は旅行です。'], pg_temp.n(h5, 1)) END,
           CASE WHEN pg_temp.n(h5, 2) % 100 < 80
                THEN jsonb_build_object(
                       'theme', pg_temp.pick(ARRAY['light','dark','system'], pg_temp.n(h5, 3)),
                       'language', pg_temp.pick(ARRAY['en','fr','de','ja','es','pt'], pg_temp.n(h5, 2) / 100),
                       'notifications', jsonb_build_object('email', pg_temp.n(h4, 0) % 2 = 0,
                                                           'sms', pg_temp.n(h4, 1) % 3 = 0,
                                                           'push', pg_temp.n(h4, 2) % 4 <> 0)) END,
           created_at + (pg_temp.n(h3, 0) % 3600000) * interval '1 millisecond',
           created_at + (pg_temp.n(h3, 0) % 3600000 + pg_temp.ms(h2, 2, 15552000000)) * interval '1 millisecond'
    FROM u WHERE i % 10 <> 0 ORDER BY 1
)
INSERT INTO refresh_tokens (id, user_id, token, expires_at, created_at)
SELECT pg_temp.uid('refresh_tokens:' || i::text), id, 'rt_' || t || h4 || substr(h5, 21, 12),
       tc + interval '30 days', tc
FROM u, LATERAL (SELECT greatest(created_at, timestamp '2024-07-01')
                        + pg_temp.ms(t, 0, 15552000000) * interval '1 millisecond') AS x(tc)
WHERE i % 2 = 0
ORDER BY 1
"#;

/// Generated payments $1..=$2 between the $3 generated users, with their histories. Stage `g`
/// materialises the hashes, `s` the numbers derived from them, `p` the rows (read twice:
/// payments and their histories). Ids are computed from plain columns: `pg_temp.uid` is only
/// inlined when its argument is cheap, and a non-inlined SQL function call costs ~5 µs.
pub(crate) const PAYMENTS_SQL: &str = concat!(
    r#"
WITH g AS MATERIALIZED (
    SELECT i, pg_temp.payment_id(i) AS id, pg_temp.status(i) AS status,
           pg_temp.h('payments:' || i::text) AS h, pg_temp.h('payments:' || i::text || ':2') AS h2,
           pg_temp.h('payments:' || i::text || ':3') AS h3, pg_temp.h('payments:' || i::text || ':4') AS h4
    FROM generate_series($1::bigint, $2::bigint) AS i
), s AS MATERIALIZED (
    -- A few heavy senders (the first 5% of users send 30% of the payments).
    SELECT g.*,
           CASE WHEN pg_temp.n(h, 0) % 100 < 30 THEN 1 + pg_temp.n(h, 1) % greatest($3::bigint / 20, 1)
                ELSE 1 + pg_temp.n(h, 1) % $3::bigint END AS sender,
           -- Anyone but the sender (when there is anyone else), or no one.
           CASE WHEN pg_temp.n(h2, 0) % 100 >= 5
                THEN 1 + (CASE WHEN pg_temp.n(h, 0) % 100 < 30 THEN 1 + pg_temp.n(h, 1) % greatest($3::bigint / 20, 1)
                               ELSE 1 + pg_temp.n(h, 1) % $3::bigint END
                          + pg_temp.n(h2, 1) % greatest($3::bigint - 1, 1)) % $3::bigint
                END AS recipient,
           pg_temp.ts(pg_temp.ms(h, 2, 126230400000)) AS created_at,
           (1 + pg_temp.n(h3, 2) % 300000) * interval '1 millisecond' AS delay,
           status <> 'pending' AND pg_temp.n(h3, 3) % 100 < 95 AS at_psp
    FROM g
), p AS MATERIALIZED (
    SELECT id,
           pg_temp.user_id(sender) AS sender_id,
           CASE WHEN recipient IS NOT NULL THEN pg_temp.user_id(recipient) END AS recipient_id,
           -- Mostly small amounts, a long tail of large ones.
           round((CASE WHEN pg_temp.n(h2, 2) % 100 < 55 THEN 100 + pg_temp.n(h2, 3) % 9900
                       WHEN pg_temp.n(h2, 2) % 100 < 85 THEN 10000 + pg_temp.n(h2, 3) % 90000
                       WHEN pg_temp.n(h2, 2) % 100 < 97 THEN 100000 + pg_temp.n(h2, 3) % 900000
                       ELSE 1000000 + pg_temp.n(h2, 3) % 99000000 END)::numeric / 100, 2) AS amount,
           CASE WHEN pg_temp.n(h3, 0) % 100 < 70 THEN 'USD'
                WHEN pg_temp.n(h3, 0) % 100 < 90 THEN 'EUR' ELSE 'GBP' END AS currency,
           status::"PaymentStatus" AS status,
           CASE WHEN pg_temp.n(h3, 1) % 100 < 75 THEN 'instant'
                WHEN pg_temp.n(h3, 1) % 100 < 90 THEN 'scheduled' ELSE 'recurring' END::"PaymentType" AS type,
           CASE WHEN pg_temp.n(h4, 0) % 100 >= 12
                THEN pg_temp.pick(ARRAY['Invoice','Rent','Dinner 🍕','Groceries','Order','Subscription',
                                        'Café au lait ☕','Miete März','お弁当代','Freelance work','Refund',
                                        'Concert tickets 🎟️','Loan repayment','Gift 🎁'], pg_temp.n(h4, 1))
                     || ' #' || (pg_temp.n(h4, 2) % 100000)::text END AS description,
           CASE WHEN pg_temp.n(h4, 3) % 100 < 20 THEN NULL
                WHEN pg_temp.n(h4, 3) % 100 < 70
                THEN jsonb_build_object('channel', pg_temp.pick(ARRAY['web','ios','android','api'], pg_temp.n(h4, 0) / 100),
                                        'client_version', '2.' || (pg_temp.n(h4, 1) % 20)::text || '.'
                                                          || (pg_temp.n(h4, 2) % 10)::text)
                ELSE jsonb_build_object('channel', 'api',
                                        'invoice', jsonb_build_object(
                                            'number', 'INV-' || lpad((pg_temp.n(h4, 1) % 1000000)::text, 6, '0'),
                                            'lines', jsonb_build_array(jsonb_build_object(
                                                'sku', 'SKU-' || (pg_temp.n(h4, 2) % 1000)::text,
                                                'qty', 1 + pg_temp.n(h3, 3) % 5)))) END AS metadata,
           CASE WHEN at_psp THEN 'pi_' || substr(h4, 9, 24) END AS psp_transaction_id,
           CASE WHEN NOT at_psp THEN NULL
                WHEN status = 'completed' THEN 'succeeded'
                WHEN status = 'processing' THEN 'processing'
                WHEN status = 'cancelled' THEN 'canceled'
                ELSE pg_temp.pick(ARRAY['card_declined','insufficient_funds','expired_card','processing_error'],
                                  pg_temp.n(h, 3)) END AS psp_status,
           CASE WHEN status = 'failed'
                THEN pg_temp.pick(ARRAY['Insufficient funds','Card declined','Card expired','Suspected fraud',
                                        'Payment provider timeout'], pg_temp.n(h, 3)) END AS failure_reason,
           CASE WHEN status = 'completed' THEN created_at + delay END AS completed_at,
           created_at,
           CASE WHEN status = 'pending' THEN created_at ELSE created_at + delay END AS updated_at
    FROM s
), ins AS (
    INSERT INTO payments (id, sender_id, recipient_id, amount, currency, status, type, description, metadata,
                          psp_transaction_id, psp_status, failure_reason, completed_at, created_at, updated_at)
    SELECT id, sender_id, recipient_id, amount, currency, status, type, description, metadata,
           psp_transaction_id, psp_status, failure_reason, completed_at, created_at, updated_at
    FROM p ORDER BY id
)
"#,
    history_sql!()
);

/// Generated audit log entries $1..=$2, about the $3 generated users and $4 generated payments.
/// Staged like [`PAYMENTS_SQL`]: hashes, numbers, ids.
pub(crate) const AUDIT_LOGS_SQL: &str = r#"
WITH g AS MATERIALIZED (
    SELECT i, pg_temp.h('audit_logs:' || i::text) AS h, pg_temp.h('audit_logs:' || i::text || ':2') AS h2,
           pg_temp.h('audit_logs:' || i::text || ':3') AS h3, pg_temp.h('audit_logs:' || i::text || ':4') AS h4
    FROM generate_series($1::bigint, $2::bigint) AS i
), a AS MATERIALIZED (
    SELECT g.*,
           -- System actions have no user.
           CASE WHEN pg_temp.n(h, 0) % 100 >= 8 THEN 1 + pg_temp.n(h, 1) % $3::bigint END AS usr,
           1 + pg_temp.n(h, 3) % $4::bigint AS payment,
           pg_temp.pick(ARRAY['user.login','user.login','user.login','user.login','user.logout','user.logout',
                              'user.register','user.password_change','payment.create','payment.create',
                              'payment.create','payment.complete','payment.complete','payment.fail',
                              'payment.cancel','profile.update','profile.update','auth.token_refresh',
                              'auth.token_refresh','admin.config_update'], pg_temp.n(h, 2)) AS action
    FROM g
), b AS MATERIALIZED (
    SELECT a.*, CASE WHEN usr IS NOT NULL THEN pg_temp.user_id(usr) END AS user_id FROM a
)
INSERT INTO audit_logs (id, user_id, action, resource_type, resource_id, details, ip_address, user_agent, created_at)
SELECT pg_temp.uid('audit_logs:' || i::text),
       user_id,
       action,
       CASE split_part(action, '.', 1) WHEN 'user' THEN 'user' WHEN 'payment' THEN 'payment'
            WHEN 'profile' THEN 'user_profile' WHEN 'admin' THEN 'system_config' END,
       CASE split_part(action, '.', 1)
            WHEN 'user' THEN user_id
            WHEN 'payment' THEN pg_temp.payment_id(payment)
            WHEN 'profile' THEN CASE WHEN usr IS NOT NULL THEN pg_temp.profile_id(usr) END
            WHEN 'admin' THEN pg_temp.pick(ARRAY['payments.max_amount','features.flags','maintenance.enabled',
                                                 'auth.password_policy'], pg_temp.n(h, 3)) END,
       CASE WHEN pg_temp.n(h2, 0) % 100 < 15 THEN NULL
            WHEN action LIKE 'payment.%'
            THEN jsonb_build_object('amount', round((100 + pg_temp.n(h2, 1) % 99900)::numeric / 100, 2),
                                    'currency', pg_temp.pick(ARRAY['USD','EUR','GBP'], pg_temp.n(h2, 2)))
            WHEN action = 'user.login'
            THEN jsonb_build_object('success', pg_temp.n(h2, 1) % 10 <> 0, 'method', 'password',
                                    'mfa', jsonb_build_object('enabled', pg_temp.n(h2, 2) % 4 = 0))
            WHEN action = 'profile.update'
            THEN jsonb_build_object('fields', pg_temp.pick(ARRAY['["phone"]','["address"]','["bio", "avatar_url"]',
                                                                 '["preferences"]']::jsonb[], pg_temp.n(h2, 1)))
            WHEN action = 'admin.config_update'
            THEN jsonb_build_object('old', pg_temp.n(h2, 1) % 100, 'new', pg_temp.n(h2, 2) % 100)
            ELSE jsonb_build_object('session', substr(h4, 1, 16)) END,
       CASE WHEN pg_temp.n(h2, 3) % 100 < 5 THEN NULL
            WHEN pg_temp.n(h2, 3) % 100 < 90
            THEN (pg_temp.n(h3, 0) >> 24)::text || '.' || ((pg_temp.n(h3, 0) >> 16) & 255)::text || '.'
                 || ((pg_temp.n(h3, 0) >> 8) & 255)::text || '.' || (pg_temp.n(h3, 0) & 255)::text
            ELSE '2001:db8:' || to_hex(pg_temp.n(h3, 1) % 65536) || '::' || to_hex(pg_temp.n(h3, 2) % 65536) END,
       CASE WHEN pg_temp.n(h3, 3) % 100 >= 7
            THEN pg_temp.pick(ARRAY[
                'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36',
                'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15',
                'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148',
                'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/124.0 Mobile Safari/537.36',
                'Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0',
                'LegacyApp/2.3.1 (iOS 17.4)', 'LegacyApp/2.3.0 (Android 14)', 'okhttp/4.12.0', 'curl/8.5.0'],
                pg_temp.n(h4, 0)) END,
       pg_temp.ts(pg_temp.ms(h4, 1, 126230400000))
FROM b
ORDER BY 1
"#;

/// The platform's settings (21 rows at every scale): every JSON type, JSON null, unicode,
/// SQL metacharacters, NULL description and updater, extreme timestamps.
pub(crate) const SYSTEM_CONFIG_SQL: &str = r#"
INSERT INTO system_config (key, value, description, updated_at, updated_by) VALUES
 ('payments.max_amount', '99999999.99', 'Largest amount of a single payment', '2022-01-01 00:00:00.000', pg_temp.user_id(-1)),
 ('payments.min_amount', '0.01', 'Smallest amount of a single payment', '2022-01-01 00:00:00.000', pg_temp.user_id(-1)),
 ('payments.currencies', '["USD", "EUR", "GBP"]', 'Accepted currencies', '2022-01-01 00:00:00.000', pg_temp.user_id(-1)),
 ('payments.default_currency', '"USD"', 'Currency when a payment names none', '2022-01-01 00:00:00.000', pg_temp.user_id(-1)),
 ('payments.psp', '{"provider": "stripe", "timeout_ms": 30000, "retry": {"max": 3, "backoff_ms": [100, 500, 2500]}}',
  'Payment service provider settings', '2023-02-14 10:20:30.400', pg_temp.user_id(-1)),
 ('auth.access_token_ttl_seconds', '900', 'Lifetime of access tokens', '2022-01-01 00:00:00.000', pg_temp.user_id(-1)),
 ('auth.refresh_token_ttl_days', '30', 'Lifetime of refresh tokens', '2022-01-01 00:00:00.000', pg_temp.user_id(-1)),
 ('auth.bcrypt_cost', '10', 'bcrypt work factor of new password hashes', '2022-01-01 00:00:00.000', pg_temp.user_id(-1)),
 ('auth.password_policy', '{"min_length": 8, "require": {"digit": true, "symbol": false, "upper": true}}',
  'Password rules', '2022-09-09 09:09:09.009', pg_temp.user_id(-9)),
 ('features.flags', '{"recurring_payments": true, "new_dashboard": false, "beta": {"enabled": true, "users": ["alice@legacy.test", "zoë@exämple.jp"]}}',
  'Feature flags', '2024-05-05 05:05:05.505', pg_temp.user_id(-1)),
 ('maintenance.enabled', 'false', 'Maintenance mode', '2024-01-01 00:00:00.000', pg_temp.user_id(-1)),
 ('maintenance.message', '{"en": "Back soon", "fr": "Bientôt de retour", "ja": "まもなく戻ります", "ar": "سنعود قريبًا", "he": "נחזור בקרוב", "emoji": "🛠️"}',
  'Message shown during maintenance — multilingual', '2024-01-01 00:00:00.000', pg_temp.user_id(-1)),
 -- JSON null value, NULL description and updater.
 ('legacy.unset', 'null', NULL, '2022-01-01 00:00:00.000', NULL),
 ('limits.daily_by_role', '{"CUSTOMER": 10000, "VENDOR": 1000000, "ADMIN": null}', 'Daily limits per role (null: none)',
  '2023-04-01 00:00:00.000', pg_temp.user_id(-1)),
 ('ui.theme', '"light"', NULL, '2022-01-01 00:00:00.000', 'system'),
 ('security.blocked_patterns', '["''; DROP TABLE system_config; --", "100%", "_", "C:\\temp", "quote \" inside"]',
  'SQL metacharacters: ''; DROP TABLE system_config; -- \ % _', '2023-01-01 00:00:00.000', 'o''brien'),
 ('rate_limit.login_per_minute', '5', 'Login attempts per minute and IP', '2022-01-01 00:00:00.000', NULL),
 ('audit.retention_days', '365', 'Days audit log entries are kept', '2022-01-01 00:00:00.000', pg_temp.user_id(-1)),
 ('epoch.ancient', '"0001-01-01T00:00:00.001Z"', 'Updated at the smallest timestamp', '0001-01-01 00:00:00.001', NULL),
 ('epoch.future', '"9999-12-31T23:59:59.999Z"', 'Updated at the largest timestamp', '9999-12-31 23:59:59.999', pg_temp.user_id(-12)),
 ('ключ.юникод 🔑', '{"nested": {"deeper": {"deepest": ["ü", "日本", "🎉", {"rtl": "שלום"}]}}}', 'Unicode key — 鍵 — مفتاح',
  '2023-07-07 07:07:07.007', pg_temp.user_id(-9));
"#;
