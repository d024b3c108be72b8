"""Deterministic benchmark corpus for Backstop: a realistic mix of tables, types and indexes, made server-side.

    .venv/bin/python infra/bench/corpus.py [--size small|medium|large|xlarge] [--seed N] [--database NAME]
                                           [--force] [--stats] [--check-determinism]

Creates (or, when its marker is current, leaves alone) the database `bench_<size>` in the local stack's cluster
(infra/local-stack.sh up first). What is in it:

* schema app: customers (identity key, unique email, jsonb preferences, text[] tags, base64 api keys), orders
  (38 columns: numeric amounts, timestamps, dates, booleans, inet, uuid, int[] / text[], nested jsonb, free text;
  key from an explicit sequence; foreign key to customers; two secondary btree indexes), documents (long text —
  some of it boilerplate, some free — md5 checksums, bytea attachments both random and repetitive), measurements
  (3 narrow columns, composite key), order_tags (2 columns, foreign key to orders) and a view;
* schema audit: events (identity, nested jsonb payloads, uuid request ids, two secondary indexes) and a view;
* schemas ref, cfg, stats, legacy: 240 small tables of four shapes (lookup, settings with a unique constraint,
  daily statistics, legacy rows with a serial key, int[] and uuid), 5–700 rows each.

Every value comes from generate_series and hashint8extended(…, seed) (text from a fixed vocabulary of words and
pseudo-words in Zipf-like frequencies), so the same seed on the same PostgreSQL major version gives
byte-identical pg_dump output apart from pg_dump's random `\\restrict` token (--check-determinism proves it).
The plain SQL compresses 3.1-3.3x with gzip -6 and zstd -1, like real data; sizes as pg_dump measures them:
small 33 MB (built in ~10 s), medium 253 MB (~40 s), large 1.0 GB (~2 min), xlarge 4 GB (the scale curve's top).

The database's comment is a JSON marker (corpus version, seed, size, a hash of the generating SQL, and the SQL
size measured after the build); a database whose marker differs is dropped and rebuilt. Objects are owned by
app_owner; backstop (the local stack's backup user) and app_reader get CONNECT and SELECT.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time

from common import BACKUP_ROLE, OWNER_ROLE, READER_ROLE, Stack, ensure_stack, say

CORPUS_VERSION = 1
DEFAULT_SEED = 20260101
# Scale factors: rows of the big tables are multiplied by these (the 240 small tables do not scale).
SIZES = {"small": 0.03, "medium": 0.25, "large": 1.0, "xlarge": 4.0}
# Rows of the big tables at scale 1.0 (about 1 GB of plain SQL).
BASE_ROWS = {
    "customers": 424_000,
    "orders": 594_000,
    "events": 795_000,
    "documents": 42_400,
    "measurements": 1_696_000,
    "order_tags": 700_000,
}
SMALL_TABLES = 240
SMALL_SCHEMAS = ("ref", "cfg", "stats", "legacy")

COMMON_WORDS = (
    "the of and to a in is it you that he was for on are with as his they be at one have this from or had by "
    "not word but what some we can out other were all there when up use your how said an each she which do "
    "their time if will way about many then them would write like so these her long make thing see him two"
).split()
SYLLABLES = (
    "ba be bi bo bu ca ce ci co cu da de di do du fa fe fi fo ga ge go ha he hi ho ka ke ki ko la le li lo lu "
    "ma me mi mo mu na ne ni no nu pa pe pi po ra re ri ro ru sa se si so su ta te ti to tu va ve vi wa we ya "
    "za zo an en in on ar er or al el il st tr th sh ch qu"
).split()
WORDS = 4096
SENTENCES = 65536
TAGS = ("vip newsletter b2b b2c wholesale trial churn-risk beta partner reseller gov edu nonprofit enterprise "
        "startup smb mobile web api legacy migrated fraud-check manual-review priority loyalty gold silver "
        "bronze referral promo eu us apac latam emea internal test archived seasonal").split()
COUNTRIES = "US GB DE FR NL ES IT SE PL BR CA JP IN AU MX CH AT BE DK NO FI IE PT CZ RO HU GR TR ZA NZ".split()
DOMAINS = ("gmail.com yahoo.com outlook.com hotmail.com icloud.com proton.me example.com web.de gmx.net "
           "orange.fr libero.it mail.ru qq.com yandex.ru aol.com fastmail.com").split()
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "okhttp/4.12.0",
    "python-requests/2.31.0",
    "curl/8.5.0",
    "Mozilla/5.0 (iPad; CPU OS 16_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
)
# Boilerplate paragraphs (sentence ids): templated documents reuse them, as mail merges and terms pages do.
BOILERPLATES = 8


def sql_text_array(items) -> str:
    return "ARRAY[" + ",".join("'" + s.replace("'", "''") + "'" for s in items) + "]"


class Gen:
    """SQL expression builders over hashint8extended with a per-use salt, so every column draws its own values."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.salt = 0

    def h(self, expr: str) -> str:
        """A 64-bit hash of expr (any integer expression), different for every call site."""
        self.salt += 1
        return f"hashint8extended(({expr})::int8, {self.seed * 1_000_003 + self.salt})"

    def m(self, expr: str, n: int) -> str:
        """An integer in [0, n)."""
        return f"(({self.h(expr)} & 9223372036854775807) % {n})"

    def u(self, expr: str) -> str:
        """A float in [0, 1)."""
        return f"(({self.h(expr)} & 4294967295)::float8 / 4294967296.0)"

    def pct(self, expr: str, percent: float) -> str:
        """True for about `percent` % of the rows."""
        return f"({self.m(expr, 10000)} < {int(percent * 100)})"

    def zipf(self, expr: str, n: int, power: float = 3.0) -> str:
        """An integer in [0, n), small values much more frequent."""
        return f"floor({n} * power({self.u(expr)}, {power}))::int"

    def word(self, expr: str, skip_common: bool = False) -> str:
        lo = len(COMMON_WORDS) if skip_common else 0
        return f"(SELECT w FROM bench_words WHERE id = {lo} + {self.zipf(expr, WORDS - lo, 2.0)})"

    def sentence(self, expr: str) -> str:
        return f"(SELECT s FROM bench_sentences WHERE id = {self.m(expr, SENTENCES)})"

    def sentences(self, expr: str, count_expr: str) -> str:
        """count_expr sentences joined by spaces (a correlated subquery: use for long text)."""
        return (f"(SELECT string_agg(s, ' ' ORDER BY k) FROM generate_series(1, {count_expr}) k "
                f"JOIN bench_sentences ON id = {self.m(f'({expr}) * 1024 + k', SENTENCES)})")

    def hexstr(self, expr: str, chars: int) -> str:
        return f"substr(md5({self.seed} || '/' || {self.salt_next()} || '/' || ({expr})), 1, {chars})"

    def salt_next(self) -> int:
        self.salt += 1
        return self.salt

    def uuid(self, expr: str) -> str:
        return f"md5({self.seed} || ':' || {self.salt_next()} || ':' || ({expr}))::uuid"

    def random_bytes(self, expr: str, blocks_expr: str) -> str:
        """blocks_expr * 32 high-entropy bytes."""
        return (f"(SELECT string_agg(sha256(int8send({self.h(f'({expr}) * 4096 + k')})), ''::bytea ORDER BY k) "
                f"FROM generate_series(1, {blocks_expr}) k)")

    def pick(self, items, expr: str, power: float = 1.0) -> str:
        idx = self.m(expr, len(items)) if power == 1.0 else self.zipf(expr, len(items), power)
        return f"({sql_text_array(items)})[1 + {idx}]"

    def ts(self, base: str, expr_seconds: str, micro: bool, g: str) -> str:
        out = f"(timestamptz '{base}' + ({expr_seconds}) * interval '1 second'"
        if micro:
            out += f" + {self.m(g, 1_000_000)} * interval '1 microsecond'"
        return out + ")"


def build_sql(seed: int, size: str) -> str:
    """The whole generating script for one seed and size, run as a superuser in the (empty) corpus database."""
    scale = SIZES[size]
    rows = {k: max(100, int(v * scale)) for k, v in BASE_ROWS.items()}
    G = Gen(seed)
    nc, no, ne, nd, nm = rows["customers"], rows["orders"], rows["events"], rows["documents"], rows["measurements"]
    nt = min(rows["order_tags"], 2 * no)
    parts = [f"""
SET client_min_messages = warning;
SET max_parallel_workers_per_gather = 0;
SET max_parallel_maintenance_workers = 0;
SET jit = off;
SET synchronous_commit = off;
SET TimeZone = 'UTC';
SET work_mem = '64MB';
SET maintenance_work_mem = '256MB';
SET ROLE {OWNER_ROLE};

-- Vocabulary (temporary: not part of the corpus). Words 0..{len(COMMON_WORDS) - 1} are common English words,
-- the rest pseudo-words of 1-4 syllables, longer ones rarer.
CREATE TEMP TABLE bench_words (id int PRIMARY KEY, w text NOT NULL);
INSERT INTO bench_words
SELECT i, CASE WHEN i < {len(COMMON_WORDS)} THEN ({sql_text_array(COMMON_WORDS)})[i + 1]
          ELSE ({sql_text_array(SYLLABLES)})[1 + {G.m('i', len(SYLLABLES))}]
            || ({sql_text_array(SYLLABLES)})[1 + {G.m('i', len(SYLLABLES))}]
            || CASE WHEN i > 600 OR {G.pct('i', 30)} THEN ({sql_text_array(SYLLABLES)})[1 + {G.m('i', len(SYLLABLES))}] ELSE '' END
            || CASE WHEN i > 2500 AND {G.pct('i', 50)} THEN ({sql_text_array(SYLLABLES)})[1 + {G.m('i', len(SYLLABLES))}] ELSE '' END
            || CASE WHEN {G.pct('i', 25)} THEN ({sql_text_array(['s', 'n', 'r', 'ed', 'ing', 'ly', 'er', 'tion'])})[1 + {G.m('i', 8)}] ELSE '' END
          END
FROM generate_series(0, {WORDS - 1}) i;
ANALYZE bench_words;

CREATE TEMP TABLE bench_sentences (id int PRIMARY KEY, s text NOT NULL);
INSERT INTO bench_sentences
SELECT i, upper(left(t, 1)) || substr(rtrim(t, ','), 2) || ({sql_text_array(['.', '.', '.', '.', '.', '.', '?', '!'])})[1 + {G.m('i', 8)}]
FROM (SELECT i, string_agg((SELECT w FROM bench_words WHERE id = {G.zipf('i * 64 + k', WORDS, 3.2)})
                           || CASE WHEN {G.pct('i * 64 + k', 7)} THEN ',' ELSE '' END, ' ' ORDER BY k) AS t
      FROM generate_series(0, {SENTENCES - 1}) i, generate_series(1, 4 + {G.m('i', 15)}) k
      GROUP BY i) x;
ANALYZE bench_sentences;

CREATE SCHEMA app;
CREATE SCHEMA audit;
COMMENT ON SCHEMA app IS 'Backstop benchmark corpus: the application';
COMMENT ON SCHEMA audit IS 'Backstop benchmark corpus: append-only audit log';
"""]

    # ---- customers ---------------------------------------------------------------------------------------------
    parts.append(f"""
CREATE TABLE app.customers (
    id            bigint GENERATED ALWAYS AS IDENTITY,
    external_id   uuid NOT NULL,
    email         text NOT NULL,
    full_name     text NOT NULL,
    country       char(2) NOT NULL,
    city          text,
    created_at    timestamptz NOT NULL,
    birth_date    date,
    is_active     boolean NOT NULL,
    balance       numeric(12, 2) NOT NULL,
    credit_limit  integer,
    tags          text[],
    preferences   jsonb,
    api_key       text,
    notes         text
);
COMMENT ON TABLE app.customers IS 'Customers; email is unique';
INSERT INTO app.customers (external_id, email, full_name, country, city, created_at, birth_date, is_active, balance,
                           credit_limit, tags, preferences, api_key, notes)
SELECT {G.uuid('g')},
       lower({G.word('g', True)}) || '.' || lower({G.word('g', True)}) || g || '@' || {G.pick(DOMAINS, 'g', 2.0)},
       CASE WHEN {G.pct('g', 2)} THEN ({sql_text_array(['José', 'Zoë', 'Łukasz', 'Siobhán', 'Jürgen', 'Ørjan', '美咲', 'Алексей'])})[1 + {G.m('g', 8)}]
            ELSE initcap({G.word('g', True)}) END || ' ' || initcap({G.word('g', True)})
            || CASE WHEN {G.pct('g', 1)} THEN '-' || initcap({G.word('g', True)}) ELSE '' END,
       {G.pick(COUNTRIES, 'g', 2.5)},
       CASE WHEN {G.pct('g', 8)} THEN NULL ELSE initcap({G.word('g', True)}) || ({sql_text_array(['', '', '', ' City', 'ville', 'burg', ' Falls', 'ton'])})[1 + {G.m('g', 8)}] END,
       {G.ts('2016-01-01 00:00:00+00', f"g * {int(300_000_000 / nc)} + {G.m('g', 86400)}", True, 'g')},
       CASE WHEN {G.pct('g', 15)} THEN NULL ELSE date '1940-01-01' + {G.m('g', 24000)}::int END,
       NOT {G.pct('g', 12)},
       round((power({G.u('g')}, 3) * 25000)::numeric, 2),
       CASE WHEN {G.pct('g', 40)} THEN NULL ELSE (1 + {G.m('g', 50)}) * 500 END,
       CASE WHEN {G.pct('g', 30)} THEN NULL
            ELSE (ARRAY[{G.pick(TAGS, 'g', 2.0)}, {G.pick(TAGS, 'g', 2.0)}, {G.pick(TAGS, 'g', 2.0)}, {G.pick(TAGS, 'g', 2.0)}])[1:{G.m('g', 5)}] END,
       CASE WHEN {G.pct('g', 10)} THEN NULL ELSE jsonb_build_object(
            'lang', {G.pick(['en', 'en', 'en', 'de', 'fr', 'es', 'pt-BR', 'ja', 'nl', 'pl'], 'g')},
            'theme', {G.pick(['light', 'dark', 'system'], 'g')},
            'notifications', jsonb_build_object('email', {G.pct('g', 70)}, 'sms', {G.pct('g', 15)}, 'push', {G.pct('g', 45)},
                                                'digest', {G.pick(['daily', 'weekly', 'never'], 'g')}),
            'marketing', jsonb_build_object('consent', {G.pct('g', 55)}, 'source', {G.pick(['ads', 'organic', 'referral', 'partner', 'social'], 'g')},
                                            'campaign_id', {G.m('g', 900)}),
            'ui', jsonb_build_object('density', {G.pick(['compact', 'comfortable'], 'g')}, 'page_size', (1 + {G.m('g', 4)}) * 25,
                                     'pinned', jsonb_build_array({G.m('g', 100)}, {G.m('g', 100)}))) END,
       CASE WHEN {G.pct('g', 50)} THEN NULL ELSE encode(sha256(int8send({G.h('g')})), 'base64') END,
       CASE WHEN {G.pct('g', 70)} THEN NULL
            WHEN {G.pct('g', 3)} THEN {G.sentence('g')} || E'\\n' || {G.sentence('g')} || E'\\tref C:\\\\crm\\\\' || g
            ELSE {G.sentence('g')} END
FROM generate_series(1, {nc}) g;
""")

    # ---- orders (wide) -----------------------------------------------------------------------------------------
    statuses = ["delivered"] * 6 + ["shipped"] * 2 + ["paid", "pending", "cancelled", "refunded"]
    parts.append(f"""
CREATE SEQUENCE app.order_id_seq START WITH 100000 CACHE 1;
CREATE TABLE app.orders (
    id              bigint NOT NULL DEFAULT nextval('app.order_id_seq'),
    customer_id     bigint NOT NULL,
    order_ref       text NOT NULL,
    status          text NOT NULL,
    channel         text NOT NULL,
    currency        char(3) NOT NULL,
    subtotal        numeric(12, 2) NOT NULL,
    tax             numeric(12, 2) NOT NULL,
    shipping        numeric(10, 2) NOT NULL,
    discount        numeric(10, 2),
    total           numeric(12, 2) NOT NULL,
    quantity        integer NOT NULL,
    line_count      smallint NOT NULL,
    weight_kg       real,
    priority        smallint NOT NULL,
    risk_score      numeric(5, 4),
    rating          double precision,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    shipped_at      timestamptz,
    delivered_on    date,
    due_on          date NOT NULL,
    is_gift         boolean NOT NULL,
    is_paid         boolean NOT NULL,
    is_flagged      boolean NOT NULL,
    coupon_code     text,
    ship_street     text,
    ship_city       text,
    ship_postcode   text,
    phone           text,
    client_ip       inet,
    user_agent      text,
    tracking_code   text,
    session_id      uuid,
    item_ids        integer[] NOT NULL,
    item_skus       text[],
    attributes      jsonb,
    note            text
);
ALTER SEQUENCE app.order_id_seq OWNED BY app.orders.id;
INSERT INTO app.orders (customer_id, order_ref, status, channel, currency, subtotal, tax, shipping, discount, total,
                        quantity, line_count, weight_kg, priority, risk_score, rating, created_at, updated_at, shipped_at,
                        delivered_on, due_on, is_gift, is_paid, is_flagged, coupon_code, ship_street, ship_city,
                        ship_postcode, phone, client_ip, user_agent, tracking_code, session_id, item_ids, item_skus,
                        attributes, note)
SELECT 1 + floor({nc} * power(r1, 1.6))::bigint,
       'ORD-' || to_char(created, 'YYYY') || '-' || lpad(g::text, 8, '0'),
       status, channel, currency,
       subtotal, round(subtotal * 0.2, 2), shipping, discount, subtotal + round(subtotal * 0.2, 2) + shipping - coalesce(discount, 0),
       lines * (1 + {G.m('g', 3)}), lines,
       CASE WHEN {G.pct('g', 20)} THEN NULL ELSE round((0.1 + 30 * power({G.u('g')}, 2))::numeric, 2)::real END,
       {G.zipf('g', 5, 2.0)},
       CASE WHEN {G.pct('g', 30)} THEN NULL ELSE round(power({G.u('g')}, 4)::numeric, 4) END,
       CASE WHEN status <> 'delivered' OR {G.pct('g', 60)} THEN NULL ELSE 1 + {G.m('g', 9)} / 2.0 END,
       created,
       created + {G.m('g', 400000)} * interval '1 second',
       CASE WHEN status IN ('shipped', 'delivered') THEN created + (3600 + {G.m('g', 300000)}) * interval '1 second' END,
       CASE WHEN status = 'delivered' THEN (created + (1 + {G.m('g', 9)}) * interval '1 day')::date END,
       (created + interval '14 days')::date,
       {G.pct('g', 4)}, status NOT IN ('pending', 'cancelled'), {G.pct('g', 1.5)},
       CASE WHEN discount IS NULL THEN NULL ELSE upper({G.word('g', True)}) || ({G.m('g', 5)} * 5 + 5) END,
       (1 + {G.zipf('g', 3000, 2.0)}) || ' ' || initcap({G.word('g', True)}) || ' ' || {G.pick(['Street', 'Road', 'Avenue', 'Lane', 'Way', 'Drive', 'Str.', 'Weg', 'Boulevard', 'Court'], 'g')},
       initcap({G.word('g', True)}),
       lpad({G.m('g', 99999)}::text, 5, '0'),
       CASE WHEN {G.pct('g', 25)} THEN NULL ELSE '+' || (1 + {G.zipf('g', 60, 2.0)}) || ' ' || lpad({G.m('g', 1000000000)}::text, 9, '0') END,
       CASE WHEN {G.pct('g', 10)} THEN NULL
            ELSE ((10 + {G.m('g', 200)}) || '.' || {G.m('g', 256)} || '.' || {G.m('g', 256)} || '.' || (1 + {G.m('g', 254)}))::inet END,
       {G.pick(USER_AGENTS, 'g', 2.0)},
       CASE WHEN status IN ('shipped', 'delivered') THEN upper({G.hexstr('g', 18)}) END,
       CASE WHEN {G.pct('g', 5)} THEN NULL ELSE {G.uuid('g')} END,
       (ARRAY[{', '.join(G.m('g', 250000) for _ in range(6))}])[1:lines],
       CASE WHEN {G.pct('g', 20)} THEN NULL
            ELSE (ARRAY[{', '.join("'SKU-' || lpad(" + G.zipf('g', 40000, 1.5) + "::text, 6, '0')" for _ in range(6))}])[1:lines] END,
       CASE WHEN {G.pct('g', 25)} THEN NULL ELSE jsonb_build_object(
            'source', jsonb_build_object('utm_source', {G.pick(['google', 'newsletter', 'facebook', 'direct', 'bing', 'partner'], 'g', 1.5)},
                                         'utm_campaign', 'c' || {G.m('g', 300)}, 'landing', '/p/' || {G.m('g', 5000)}),
            'gift', CASE WHEN {G.pct('g', 5)} THEN jsonb_build_object('wrap', {G.pct('g', 50)}, 'message', {G.sentence('g')}) END,
            'dims_cm', jsonb_build_array({G.m('g', 120)}, {G.m('g', 80)}, {G.m('g', 60)}),
            'flags', to_jsonb((ARRAY['fragile', 'express', 'signature', 'oversize'])[1:{G.m('g', 3)}]),
            'fx_rate', round((0.5 + {G.u('g')})::numeric, 6)) END,
       CASE WHEN {G.pct('g', 65)} THEN NULL
            WHEN {G.pct('g', 2)} THEN E'Call before delivery.\\n' || {G.sentence('g')}
            ELSE {G.sentence('g')} END
FROM (SELECT g, {G.u('g')} AS r1,
             {G.ts('2019-06-01 00:00:00+00', f"g * {int(200_000_000 / no)} + {G.m('g', 20000)}", True, 'g')} AS created,
             ({sql_text_array(statuses)})[1 + {G.m('g', len(statuses))}] AS status,
             {G.pick(['web', 'web', 'web', 'mobile', 'mobile', 'phone', 'store', 'api'], 'g')} AS channel,
             {G.pick(['EUR', 'USD', 'GBP', 'SEK', 'PLN', 'CHF', 'JPY'], 'g', 2.0)} AS currency,
             round((5 + 800 * power({G.u('g')}, 3))::numeric, 2) AS subtotal,
             ({sql_text_array(['0.00', '4.95', '4.95', '9.90', '14.50', '0.00'])})[1 + {G.m('g', 6)}]::numeric AS shipping,
             CASE WHEN {G.pct('g', 80)} THEN NULL ELSE round((1 + 40 * {G.u('g')})::numeric, 2) END AS discount,
             1 + {G.zipf('g', 6, 1.8)} AS lines
      FROM generate_series(1, {no}) g OFFSET 0) x;
""")

    # ---- order_tags (2 columns) --------------------------------------------------------------------------------
    parts.append(f"""
CREATE TABLE app.order_tags (
    order_id  bigint NOT NULL,
    tag       text NOT NULL
);
INSERT INTO app.order_tags
SELECT 100000 + (g - 1) / 2, CASE WHEN g % 2 = 0 THEN ({sql_text_array(TAGS[:20])})[1 + {G.m('(g - 1) / 2', 20)}]
                                  ELSE ({sql_text_array(TAGS[20:])})[1 + {G.m('(g - 1) / 2', len(TAGS) - 20)}] END
FROM generate_series(1, {nt}) g;
""")

    # ---- documents (long text, bytea) --------------------------------------------------------------------------
    parts.append(f"""
CREATE TEMP TABLE bench_boilerplate (id int PRIMARY KEY, p text NOT NULL);
INSERT INTO bench_boilerplate
SELECT b, (SELECT string_agg(s, ' ' ORDER BY id) FROM bench_sentences WHERE id BETWEEN b * 1000 AND b * 1000 + 11 + b)
FROM generate_series(0, {BOILERPLATES - 1}) b;

CREATE TABLE app.documents (
    id           integer NOT NULL,
    customer_id  bigint,
    kind         text NOT NULL,
    title        text NOT NULL,
    language     char(2),
    body         text NOT NULL,
    checksum     text NOT NULL,
    attachment   bytea,
    created_on   date NOT NULL,
    revised_at   timestamptz
);
INSERT INTO app.documents
SELECT g, CASE WHEN {G.pct('g', 20)} THEN NULL ELSE 1 + {G.m('g', nc)} END, kind, title,
       {G.pick(['en', 'en', 'en', 'de', 'fr', 'es', 'nl'], 'g')},
       body, md5(body),
       CASE WHEN a < 40 THEN NULL
            WHEN a < 75 THEN {G.random_bytes('g', f"1 + {G.zipf('g', 24, 2.0)}")}
            ELSE '\\x89504e470d0a1a0a'::bytea || decode(repeat('00000000ff' || lpad(to_hex({G.m('g', 256)}), 2, '0') || 'ffff00000000', 8 + {G.m('g', 90)}::int), 'hex')
       END,
       date '2015-01-01' + (g::int8 * {int(3500 * 1000 / nd)} / 1000)::int + {G.m('g', 5)}::int,
       CASE WHEN {G.pct('g', 60)} THEN NULL ELSE {G.ts('2024-01-01 00:00:00+00', G.m('g', 60_000_000), True, 'g')} END
FROM (SELECT g, {G.m('g', 100)} AS a, kind,
             initcap({G.word('g', True)}) || ' ' || {G.word('g')} || ' ' || {G.word('g', True)} || ' #' || g AS title,
             CASE WHEN kind IN ('invoice', 'notice') THEN
                       'Dear ' || initcap({G.word('g', True)}) || E',\\n\\n' || (SELECT p FROM bench_boilerplate WHERE id = {G.m('g', BOILERPLATES)})
                       || E'\\n\\nReference ' || g || ', amount ' || round((10 + 900 * {G.u('g')})::numeric, 2) || E'.\\n\\n'
                       || (SELECT p FROM bench_boilerplate WHERE id = {G.m('g', BOILERPLATES)}) || E'\\n\\nRegards,\\nThe Team'
                  ELSE {G.sentences('g', f"3 + {G.zipf('g', 120, 1.7)}")}
             END AS body
      FROM (SELECT g, {G.pick(['note', 'note', 'article', 'invoice', 'invoice', 'notice', 'report', 'ticket'], 'g')} AS kind
            FROM generate_series(1, {nd}) g OFFSET 0) k OFFSET 0) x;
""")

    # ---- measurements (3 narrow columns) -----------------------------------------------------------------------
    parts.append(f"""
CREATE TABLE app.measurements (
    sensor_id  integer NOT NULL,
    taken_at   timestamptz NOT NULL,
    reading    numeric(9, 3)
);
INSERT INTO app.measurements
SELECT 1 + {G.m('g', 700)}, timestamptz '2023-01-01 00:00:00+00' + g * interval '5 seconds',
       CASE WHEN {G.pct('g', 1)} THEN NULL ELSE round((20 + 15 * sin(g / 5000.0) + 3 * {G.u('g')})::numeric, 3) END
FROM generate_series(1, {nm}) g;
""")

    # ---- audit.events ------------------------------------------------------------------------------------------
    kinds = ["login", "login", "login", "view", "view", "view", "view", "update", "update", "create", "delete",
             "export", "logout", "password_reset", "api_call", "api_call"]
    parts.append(f"""
CREATE TABLE audit.events (
    id           bigint GENERATED BY DEFAULT AS IDENTITY,
    occurred_at  timestamptz NOT NULL,
    actor_id     bigint,
    kind         text NOT NULL,
    request_id   uuid NOT NULL,
    payload      jsonb NOT NULL
);
INSERT INTO audit.events (occurred_at, actor_id, kind, request_id, payload)
SELECT {G.ts('2022-01-01 00:00:00+00', f"g * {int(100_000_000 / ne)} + {G.m('g', 100)}", True, 'g')},
       CASE WHEN {G.pct('g', 6)} THEN NULL ELSE 1 + floor({nc} * power({G.u('g')}, 2))::bigint END,
       kind, {G.uuid('g')},
       jsonb_build_object(
           'action', kind,
           'target', jsonb_build_object('type', {G.pick(['order', 'customer', 'document', 'invoice', 'session'], 'g', 1.5)}, 'id', {G.m('g', 1000000)}),
           'ctx', jsonb_build_object('ip', (10 + {G.m('g', 200)}) || '.' || {G.m('g', 256)} || '.' || {G.m('g', 256)} || '.' || {G.m('g', 256)},
                                     'ua', {G.m('g', 10)}, 'region', {G.pick(['eu-west-1', 'us-east-1', 'ap-southeast-2'], 'g', 2.0)},
                                     'trace', {G.hexstr('g', 16)}),
           'changes', CASE WHEN kind IN ('update', 'create') THEN jsonb_build_array(
                         jsonb_build_object('field', {G.pick(['status', 'email', 'address', 'total', 'note', 'tags'], 'g')}, 'old', {G.word('g')}, 'new', {G.word('g')}),
                         jsonb_build_object('field', 'updated_by', 'old', NULL, 'new', {G.m('g', 5000)})) END,
           'ms', {G.zipf('g', 3000, 3.0)},
           'ok', NOT {G.pct('g', 3)})
FROM (SELECT g, ({sql_text_array(kinds)})[1 + {G.m('g', len(kinds))}] AS kind FROM generate_series(1, {ne}) g OFFSET 0) x;
""")

    # ---- 240 small tables --------------------------------------------------------------------------------------
    parts.append(f"""
CREATE SCHEMA ref;
CREATE SCHEMA cfg;
CREATE SCHEMA stats;
CREATE SCHEMA legacy;
DO $do$
DECLARE
    schemas text[] := {sql_text_array(SMALL_SCHEMAS)};
    sch text;
    tbl text;
BEGIN
    FOR i IN 1..{SMALL_TABLES} LOOP
        sch := schemas[1 + i % 4];
        CASE (i / 4) % 4
        WHEN 0 THEN
            tbl := format('%I.lookup_%s', sch, lpad(i::text, 3, '0'));
            EXECUTE format('CREATE TABLE %s (code text NOT NULL, label text NOT NULL, sort_order integer NOT NULL,
                            is_enabled boolean NOT NULL DEFAULT true, description text)', tbl);
            EXECUTE format($q$INSERT INTO %s SELECT upper(substr(w, 1, 6)) || k, initcap(w), k * 10, k %% 7 <> 0,
                                CASE WHEN k %% 3 = 0 THEN NULL ELSE s END
                               FROM generate_series(1, %s) k,
                                    LATERAL (SELECT (SELECT w FROM bench_words WHERE id = 50 + (hashint8extended(%s * 1000 + k, {seed}) & 4095) %% 4000) AS w,
                                                    (SELECT s FROM bench_sentences WHERE id = (hashint8extended(%s * 1000 + k, {seed + 1}) & 65535)) AS s) x$q$,
                           tbl, 8 + (hashint8extended(i, {seed + 2}) & 255) % 60, i, i);
        WHEN 1 THEN
            tbl := format('%I.settings_%s', sch, lpad(i::text, 3, '0'));
            EXECUTE format('CREATE TABLE %s (id integer NOT NULL, name text NOT NULL, value jsonb NOT NULL, updated_at timestamptz NOT NULL)', tbl);
            EXECUTE format($q$INSERT INTO %s SELECT k, 'setting.' || w || '.' || k,
                                jsonb_build_object('enabled', k %% 2 = 0, 'limit', k * 100, 'label', s,
                                                   'nested', jsonb_build_object('a', k, 'b', ARRAY[k, k + 1])),
                                timestamptz '2024-01-01 00:00:00+00' + (hashint8extended(%s * 1000 + k, {seed + 3}) & 65535) * interval '1 minute'
                               FROM generate_series(1, %s) k,
                                    LATERAL (SELECT (SELECT w FROM bench_words WHERE id = 50 + (hashint8extended(%s * 1000 + k, {seed + 4}) & 4095) %% 4000) AS w,
                                                    (SELECT s FROM bench_sentences WHERE id = (hashint8extended(%s * 1000 + k, {seed + 5}) & 65535)) AS s) x$q$,
                           tbl, i, 5 + (hashint8extended(i, {seed + 6}) & 255) % 40, i, i);
        WHEN 2 THEN
            tbl := format('%I.daily_%s', sch, lpad(i::text, 3, '0'));
            EXECUTE format('CREATE TABLE %s (day date NOT NULL, hits bigint NOT NULL, errors integer NOT NULL, p95_ms numeric(8, 2), ratio real)', tbl);
            EXECUTE format($q$INSERT INTO %s SELECT date '2023-01-01' + k, 1000 + (h & 1048575), (h >> 20) & 127,
                                CASE WHEN k %% 17 = 0 THEN NULL ELSE round(((h >> 27) & 65535) / 100.0, 2) END,
                                round((((h >> 43) & 1023) / 1024.0)::numeric, 3)::real
                               FROM generate_series(0, %s) k, LATERAL (SELECT hashint8extended(%s * 1000 + k, {seed + 7}) & 9223372036854775807 AS h) x$q$,
                           tbl, 30 + (hashint8extended(i, {seed + 8}) & 1023) % 700, i);
        ELSE
            tbl := format('%I.legacy_%s', sch, lpad(i::text, 3, '0'));
            EXECUTE format('CREATE TABLE %s (id serial NOT NULL, name varchar(80) NOT NULL, payload text, created date,
                            flags integer[], ref uuid)', tbl);
            EXECUTE format($q$INSERT INTO %s (name, payload, created, flags, ref)
                               SELECT initcap(w) || ' ' || k, CASE WHEN k %% 4 = 0 THEN NULL ELSE s END, date '2010-01-01' + k * 3,
                                      CASE WHEN k %% 5 = 0 THEN NULL ELSE ARRAY[k %% 3, k %% 7, k %% 11] END,
                                      md5('{seed}/' || %s || '/' || k)::uuid
                               FROM generate_series(1, %s) k,
                                    LATERAL (SELECT (SELECT w FROM bench_words WHERE id = 50 + (hashint8extended(%s * 1000 + k, {seed + 9}) & 4095) %% 4000) AS w,
                                                    (SELECT s FROM bench_sentences WHERE id = (hashint8extended(%s * 1000 + k, {seed + 10}) & 65535)) AS s) x$q$,
                           tbl, i, 20 + (hashint8extended(i, {seed + 11}) & 1023) % 400, i, i);
        END CASE;
    END LOOP;
END
$do$;
""")

    # ---- post-data: keys, indexes, constraints, views, grants --------------------------------------------------
    parts.append(f"""
ALTER TABLE app.customers ADD PRIMARY KEY (id);
ALTER TABLE app.customers ADD CONSTRAINT customers_email_key UNIQUE (email);
ALTER TABLE app.orders ADD PRIMARY KEY (id);
ALTER TABLE app.orders ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES app.customers (id);
CREATE INDEX orders_customer_id_idx ON app.orders (customer_id);
CREATE INDEX orders_created_at_idx ON app.orders (created_at);
ALTER TABLE app.order_tags ADD PRIMARY KEY (order_id, tag);
ALTER TABLE app.order_tags ADD CONSTRAINT order_tags_order_id_fkey FOREIGN KEY (order_id) REFERENCES app.orders (id) ON DELETE CASCADE;
ALTER TABLE app.documents ADD PRIMARY KEY (id);
CREATE INDEX documents_customer_id_idx ON app.documents (customer_id);
ALTER TABLE app.measurements ADD PRIMARY KEY (sensor_id, taken_at);
ALTER TABLE audit.events ADD PRIMARY KEY (id);
CREATE INDEX events_occurred_at_idx ON audit.events (occurred_at);
CREATE INDEX events_actor_kind_idx ON audit.events (actor_id, kind);
DO $do$
DECLARE r record;
BEGIN
    FOR r IN SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r' AND n.nspname IN ({", ".join(f"'{s}'" for s in SMALL_SCHEMAS)}) ORDER BY 1, 2 LOOP
        EXECUTE format('ALTER TABLE %I.%I ADD PRIMARY KEY (%s)', r.nspname, r.relname,
                       CASE split_part(r.relname, '_', 1) WHEN 'lookup' THEN 'code' WHEN 'daily' THEN 'day' ELSE 'id' END);
        IF r.relname LIKE 'settings%' THEN
            EXECUTE format('ALTER TABLE %I.%I ADD UNIQUE (name)', r.nspname, r.relname);
        END IF;
    END LOOP;
END
$do$;

CREATE VIEW app.customer_order_totals AS
    SELECT c.id, c.email, count(o.id) AS orders, coalesce(sum(o.total), 0) AS total_spent, max(o.created_at) AS last_order_at
    FROM app.customers c LEFT JOIN app.orders o ON o.customer_id = c.id
    GROUP BY c.id, c.email;
CREATE VIEW audit.daily_event_counts AS
    SELECT date_trunc('day', occurred_at) AS day, kind, count(*) AS events FROM audit.events GROUP BY 1, 2;

RESET ROLE;
REVOKE CONNECT ON DATABASE :"corpus_db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"corpus_db" TO {BACKUP_ROLE}, {OWNER_ROLE}, {READER_ROLE};
""")
    schemas = ["app", "audit", *SMALL_SCHEMAS]
    for s in schemas:
        parts.append(f"GRANT USAGE ON SCHEMA {s} TO {BACKUP_ROLE}, {READER_ROLE};\n"
                     f"GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {BACKUP_ROLE};\n"
                     f"GRANT SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {BACKUP_ROLE};\n")
    parts.append(f"GRANT SELECT ON ALL TABLES IN SCHEMA app TO {READER_ROLE};\n")
    return "".join(parts)


def marker(seed: int, size: str, sql: str) -> dict:
    return {"corpus": "backstop-bench", "version": CORPUS_VERSION, "seed": seed, "size": size,
            "sql_sha256": hashlib.sha256(sql.encode()).hexdigest()[:16]}


def current_marker(stack: Stack, database: str) -> dict | None:
    text = stack.psql("postgres", f"SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{database}'",
                      capture=True)
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"unparsed": text}


def dump_bytes(stack: Stack, database: str) -> int:
    """Size of the plain-format pg_dump, counted through a pipe."""
    p = subprocess.Popen([stack.bin("pg_dump"), "-d", database], stdout=subprocess.PIPE, env=stack.pg_env)
    total = 0
    while chunk := p.stdout.read(1 << 20):
        total += len(chunk)
    if p.wait() != 0:
        raise RuntimeError(f"pg_dump of {database} failed")
    return total


def ensure_corpus(stack: Stack, size: str = "small", seed: int = DEFAULT_SEED, database: str | None = None,
                  force: bool = False) -> dict:
    """Make sure the corpus database exists and is current; return its marker (with sql_bytes)."""
    database = database or f"bench_{size}"
    sql = build_sql(seed, size)
    want = marker(seed, size, sql)
    have = current_marker(stack, database)
    if not force and have and {k: have.get(k) for k in want} == want and "sql_bytes" in have:
        return have
    say(f"building the {size} corpus in database {database} (seed {seed})…")
    t0 = time.monotonic()
    stack.psql("postgres", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    stack.psql("postgres", f"CREATE DATABASE \"{database}\" OWNER {OWNER_ROLE} TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'")
    r = subprocess.run([stack.bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"corpus_db={database}",
                        "-1", "-d", database], input=sql, text=True, env=stack.pg_env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError(f"generating the corpus failed:\n{r.stderr.strip()}")
    t1 = time.monotonic()
    # Freeze and analyze: the first dump should not be the one that sets hint bits.
    subprocess.run([stack.bin("vacuumdb"), "-q", "-F", "-z", "-d", database], env=stack.pg_env, check=True)
    want["sql_bytes"] = dump_bytes(stack, database)
    want["built_seconds"] = round(time.monotonic() - t0, 1)
    comment = json.dumps(want, sort_keys=True).replace("'", "''")
    stack.psql("postgres", f"COMMENT ON DATABASE \"{database}\" IS '{comment}'")
    say(f"  generated in {t1 - t0:.1f} s, vacuumed and measured in {time.monotonic() - t1:.1f} s: "
        f"{want['sql_bytes'] / 1e6:.1f} MB of plain SQL")
    return want


def compression_stats(stack: Stack, database: str) -> dict:
    """SQL bytes, gzip -6 bytes and zstd -1 bytes of one plain dump (the dump is read once, compressed twice)."""
    dump = subprocess.Popen([stack.bin("pg_dump"), "-d", database], stdout=subprocess.PIPE, env=stack.pg_env)
    gz = subprocess.Popen(["gzip", "-6"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    zs = subprocess.Popen(["zstd", "-1", "-T2", "-q", "-c"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    counts = {"gzip": 0, "zstd": 0}

    def drain(name, proc):
        while chunk := proc.stdout.read(1 << 20):
            counts[name] += len(chunk)

    import threading
    threads = [threading.Thread(target=drain, args=(n, p)) for n, p in (("gzip", gz), ("zstd", zs))]
    for t in threads:
        t.start()
    sql = 0
    while chunk := dump.stdout.read(1 << 20):
        sql += len(chunk)
        gz.stdin.write(chunk)
        zs.stdin.write(chunk)
    gz.stdin.close()
    zs.stdin.close()
    for t in threads:
        t.join()
    if dump.wait() or gz.wait() or zs.wait():
        raise RuntimeError("the compression measurement failed")
    return {"sql_bytes": sql, "gzip6_bytes": counts["gzip"], "zstd1_bytes": counts["zstd"],
            "gzip6_ratio": round(sql / counts["gzip"], 2), "zstd1_ratio": round(sql / counts["zstd"], 2)}


def table_sizes(stack: Stack, database: str) -> list[tuple[str, int, int]]:
    """(table, rows, bytes of COPY text approximated by the row's text form) for the big tables."""
    out = stack.psql(database, """
        SELECT n.nspname || '.' || c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname IN ('app', 'audit') ORDER BY 1""", capture=True)
    return [tuple(line.split("|")) for line in out.splitlines()]


def normalized_dump(stack: Stack, database: str) -> bytes:
    out = subprocess.run([stack.bin("pg_dump"), "-d", database], env=stack.pg_env, check=True, stdout=subprocess.PIPE).stdout
    # pg_dump 15.18+ writes a random \restrict token at the top and its \unrestrict at the end.
    return b"".join(line for line in out.splitlines(keepends=True) if not line.startswith((b"\\restrict ", b"\\unrestrict ")))


def check_determinism(stack: Stack, size: str, seed: int) -> bool:
    """Build the corpus twice under two names and compare their dumps (minus the \\restrict lines)."""
    a, b = f"bench_{size}_det_a", f"bench_{size}_det_b"
    try:
        ensure_corpus(stack, size, seed, a, force=True)
        ensure_corpus(stack, size, seed, b, force=True)
        da, db = normalized_dump(stack, a), normalized_dump(stack, b)
        same = da == db
        say(f"determinism: two builds of the {size} corpus with seed {seed}: dumps of {len(da)} and {len(db)} bytes, "
            f"sha256 {hashlib.sha256(da).hexdigest()[:16]} / {hashlib.sha256(db).hexdigest()[:16]}: "
            + ("byte-identical" if same else "DIFFERENT"))
        return same
    finally:
        for d in (a, b):
            stack.psql("postgres", f'DROP DATABASE IF EXISTS "{d}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--database", help="database name (default bench_<size>)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the marker is current")
    parser.add_argument("--stats", action="store_true", help="also measure gzip -6 and zstd -1 sizes of a plain dump")
    parser.add_argument("--check-determinism", action="store_true",
                        help="build twice under scratch names and compare the dumps; exit 1 if they differ")
    parser.add_argument("--print-sql", action="store_true", help="print the generating SQL and exit")
    args = parser.parse_args()
    if args.print_sql:
        print(build_sql(args.seed, args.size))
        return 0
    stack = ensure_stack()
    if args.check_determinism:
        return 0 if check_determinism(stack, args.size, args.seed) else 1
    database = args.database or f"bench_{args.size}"
    info = ensure_corpus(stack, args.size, args.seed, database, args.force)
    say(json.dumps(info, sort_keys=True))
    if args.stats:
        stats = compression_stats(stack, database)
        say(json.dumps(stats))
        for name, rows, size in table_sizes(stack, database):
            say(f"  {name:28} {int(rows):>10} rows {int(size) / 1e6:9.1f} MB on disk")
    return 0


if __name__ == "__main__":
    sys.exit(main())
