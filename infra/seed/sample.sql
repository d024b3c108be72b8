-- sample.sql — the "sample" database of the Backstop local stack: a small but
-- varied schema worth backing up (and restoring, and comparing).
--
-- Run as a superuser, connected to an empty database "sample" owned by
-- app_owner, with roles app_owner and app_reader already present:
--     psql -v ON_ERROR_STOP=1 -X -d sample -f infra/seed/sample.sql
-- Deterministic: every value derives from generate_series and md5(); no
-- random(), now() or clock-dependent defaults are used while seeding, so two
-- runs produce identical data (modulo physical layout).
--
-- Contents: schemas sales, inventory, audit; 9 tables (~87k rows), foreign
-- keys, btree/partial/unique/GIN indexes, bytea with zero bytes and
-- backslashes, json + jsonb, numeric (incl. NaN/Infinity), timestamptz
-- (incl. infinity), text[] arrays, text with tabs/newlines/backslashes/unicode,
-- NULLs, identity columns, an explicit sequence used by a default, a view, a
-- materialized view, functions, a trigger, comments, an empty table
-- (sales.refunds) and a table without a primary key (audit.events).

\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET standard_conforming_strings = on;

BEGIN;

-- Everything below is owned by app_owner.
SET ROLE app_owner;

COMMENT ON DATABASE sample IS 'Backstop sample database (infra/seed/sample.sql)';

CREATE SCHEMA sales;
CREATE SCHEMA inventory;
CREATE SCHEMA audit;
COMMENT ON SCHEMA sales IS 'Customers, orders and order lines';
COMMENT ON SCHEMA inventory IS 'Warehouses, products and stock';
COMMENT ON SCHEMA audit IS 'Append-only logs';

-- Deterministic pseudo-random helper: a non-negative 60-bit integer from md5.
CREATE FUNCTION public.seed_hash(key text) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT ('x' || substr(md5(key), 1, 15))::bit(60)::bigint $$;
COMMENT ON FUNCTION public.seed_hash(text) IS 'md5-based deterministic hash used to seed sample data';

------------------------------------------------------------------------------
-- inventory
------------------------------------------------------------------------------

CREATE TABLE inventory.warehouses (
    id          smallint PRIMARY KEY,
    code        text NOT NULL UNIQUE,
    name        text NOT NULL,
    opened_on   date NOT NULL,
    capacity_m3 numeric(12, 3)
);

INSERT INTO inventory.warehouses (id, code, name, opened_on, capacity_m3)
SELECT i,
       'WH-' || lpad(i::text, 2, '0'),
       (ARRAY['Rotterdam', 'Zürich', 'São Paulo', 'Kraków', 'Ōsaka',
              'Reykjavík', 'Montréal', 'Łódź', 'Dún Laoghaire', 'Москва'])[i],
       date '2015-01-01' + (i * 211),
       CASE WHEN i = 10 THEN NULL ELSE round((seed_hash('wh' || i) % 1000000) / 7.0, 3) END
FROM generate_series(1, 10) AS i;

CREATE TABLE inventory.products (
    id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku             text NOT NULL,
    name            text NOT NULL,
    description     text,
    price           numeric(10, 2) NOT NULL CHECK (price >= 0),
    weight_kg       numeric,
    attributes      jsonb NOT NULL DEFAULT '{}',
    thumbnail       bytea,
    dimensions_cm   numeric[],
    updated_at      timestamptz NOT NULL,
    discontinued_at timestamptz,
    CONSTRAINT products_sku_key UNIQUE (sku)
);
COMMENT ON TABLE inventory.products IS 'Product catalogue; price updates are audited into audit.price_changes';
COMMENT ON COLUMN inventory.products.thumbnail IS 'Raw binary blob (contains 0x00 and 0x5c bytes on purpose)';

INSERT INTO inventory.products (sku, name, description, price, weight_kg, attributes,
                                thumbnail, dimensions_cm, updated_at, discontinued_at)
SELECT 'SKU-' || lpad(i::text, 6, '0'),
       (ARRAY['Widget', 'Gadget', 'Sprocket', 'Flange', 'Gizmo', 'Doohickey',
              'Kugelschreiber', 'Tête-à-tête set', 'Ящик', '箱'])[1 + h % 10]
           || ' ' || (ARRAY['Mk I', 'Mk II', 'Pro', 'Lite', 'XL', '“Deluxe”'])[1 + (h >> 4) % 6]
           || ' #' || i,
       CASE
           WHEN i % 17 = 0 THEN NULL
           WHEN i % 5 = 0 THEN E'Multi-line description:\n\t- tab-indented bullet\n\t- path C:\\Program Files\\backstop\n\t- emoji 📦 and accents àéîõü'
           ELSE 'Plain description ' || md5(i::text)
       END,
       round((h % 100000) / 100.0 + 0.99, 2),
       CASE i % 4
           WHEN 0 THEN NULL
           WHEN 1 THEN round((h % 123457) / 1000.0, 3)
           ELSE ((h % 1000000007)::numeric / 1000000) -- arbitrary-scale numeric
       END,
       jsonb_build_object(
           'color', (ARRAY['red', 'green', 'blue', 'black', 'white'])[1 + (h >> 8) % 5],
           'tags', jsonb_build_array('t' || (h % 7), 't' || (h % 11)),
           'rating', ((h >> 12) % 50) / 10.0,
           'hazmat', (i % 97 = 0),
           'notes', CASE WHEN i % 13 = 0 THEN E'quote " backslash \\ tab \t newline \n unicode ✓' END),
       CASE
           WHEN i % 10 = 0 THEN NULL
           WHEN i % 10 = 1 THEN ''::bytea
           ELSE decode('00' || '5c' || md5(i::text) || '000000' || '5c5c' || '0a0d09'
                       || repeat(md5('thumb' || i), 1 + i % 4) || 'ff00', 'hex')
       END,
       CASE WHEN i % 3 = 0 THEN NULL
            ELSE ARRAY[(h % 200) / 2.0, (h % 300) / 4.0, (h % 50) + 0.125]::numeric[] END,
       timestamptz '2023-01-01 00:00:00+00' + i * interval '3 hours 17 minutes',
       CASE
           WHEN i = 7 THEN timestamptz 'infinity'
           WHEN i % 50 = 0 THEN timestamptz '2024-06-30 23:59:59.999999+00' - i * interval '1 day'
       END
FROM (SELECT i, seed_hash('product' || i) AS h FROM generate_series(1, 2000) AS i) AS g;

CREATE TABLE inventory.stock_levels (
    warehouse_id smallint NOT NULL REFERENCES inventory.warehouses (id),
    product_id   integer  NOT NULL REFERENCES inventory.products (id) ON DELETE CASCADE,
    quantity     integer  NOT NULL CHECK (quantity >= 0),
    reserved     integer  NOT NULL DEFAULT 0,
    counted_at   timestamptz,
    PRIMARY KEY (warehouse_id, product_id)
);

INSERT INTO inventory.stock_levels (warehouse_id, product_id, quantity, reserved, counted_at)
SELECT w, p,
       (seed_hash(w || '/' || p) % 500)::int,
       (seed_hash('r' || w || '/' || p) % 7)::int,
       CASE WHEN (w + p) % 9 = 0 THEN NULL
            ELSE timestamptz '2024-03-01 08:00:00+01' + ((w * 2000 + p) % 1440) * interval '1 minute' END
FROM generate_series(1, 10) AS w, generate_series(1, 2000) AS p;

------------------------------------------------------------------------------
-- sales
------------------------------------------------------------------------------

CREATE TABLE sales.customers (
    id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    email       text NOT NULL,
    full_name   text NOT NULL,
    country     char(2),
    tags        text[] NOT NULL DEFAULT '{}',
    profile     jsonb,
    notes       text,
    created_at  timestamptz NOT NULL,
    deleted_at  timestamptz
);
COMMENT ON TABLE sales.customers IS 'Customers. Emails are unique case-insensitively.';
COMMENT ON COLUMN sales.customers.notes IS E'Free text; may contain tabs, newlines, backslashes and "\\." lines';

INSERT INTO sales.customers (email, full_name, country, tags, profile, notes, created_at, deleted_at)
SELECT 'user' || i || '@' || (ARRAY['example.com', 'Example.ORG', 'müller.de', 'test.invalid'])[1 + h % 4],
       (ARRAY['Ana', 'José', 'Zoë', 'Łukasz', 'Siobhán', 'Jürgen', 'Ørjan', '美咲', 'Алексей', 'O''Brien'])[1 + (h >> 3) % 10]
           || ' ' ||
       (ARRAY['Smith', 'Müller', 'García', 'Nowak', 'Ó Súilleabháin', 'Tanaka 田中', 'Иванов', 'D''Arcy', 'Nguyễn', 'al-Hassan'])[1 + (h >> 7) % 10],
       CASE WHEN i % 23 = 0 THEN NULL
            ELSE (ARRAY['NL', 'CH', 'BR', 'PL', 'JP', 'IS', 'CA', 'IE', 'DE', 'US'])[1 + (h >> 11) % 10] END,
       CASE i % 6
           WHEN 0 THEN '{}'::text[]
           WHEN 1 THEN ARRAY['vip']
           WHEN 2 THEN ARRAY['has,comma', 'has "double" quote', 'has {brace}', 'back\slash']
           WHEN 3 THEN ARRAY['newsletter', NULL, 'null', 'NULL', '']
           WHEN 4 THEN ARRAY['tag-' || (h % 100), 'ünïcödé', '🎉']
           ELSE ARRAY[E'tab\there', E'line\nbreak']
       END,
       CASE WHEN i % 11 = 0 THEN NULL
            ELSE jsonb_build_object('newsletter', i % 2 = 0,
                                    'score', (h % 10000) / 100.0,
                                    'prefs', jsonb_build_object('lang', (ARRAY['en', 'de', 'ja', 'pt-BR'])[1 + h % 4],
                                                                'emptyobj', '{}'::jsonb, 'nothing', NULL::text),
                                    'history', to_jsonb(ARRAY[h % 3, h % 5, h % 7])) END,
       CASE
           WHEN i = 1 THEN E'line one\n\\.\nline three after a lone backslash-dot line'
           WHEN i = 2 THEN E'\\N'
           WHEN i = 3 THEN ''
           WHEN i % 9 = 0 THEN format(E'Called on %s.\tFollow-up:\n\t* check C:\\temp\\%s\n\t* ünïcödé ✓ 日本語 🎉\r\nend', i, i)
           WHEN i % 4 = 0 THEN NULL
           ELSE 'Customer note ' || substr(md5('note' || i), 1, 12)
       END,
       timestamptz '2020-01-01 00:00:00+00' + i * interval '4 hours 13 minutes 7.123456 seconds',
       CASE WHEN i % 37 = 0 THEN timestamptz '2024-12-31 12:00:00+00' - i * interval '1 hour' END
FROM (SELECT i, seed_hash('customer' || i) AS h FROM generate_series(1, 5000) AS i) AS g;

-- Explicit sequence used by a column default (rather than serial/identity).
CREATE SEQUENCE sales.order_number_seq START WITH 100001 INCREMENT BY 1 CACHE 1;

CREATE TABLE sales.orders (
    id               bigint PRIMARY KEY DEFAULT nextval('sales.order_number_seq'),
    customer_id      bigint NOT NULL REFERENCES sales.customers (id),
    warehouse_id     smallint REFERENCES inventory.warehouses (id),
    status           text NOT NULL CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled', 'refunded')),
    ordered_at       timestamptz NOT NULL,
    total            numeric(12, 2),
    currency         char(3) NOT NULL DEFAULT 'EUR',
    shipping_address json,
    coupon_codes     text[]
);
ALTER SEQUENCE sales.order_number_seq OWNED BY sales.orders.id;
COMMENT ON COLUMN sales.orders.shipping_address IS 'json (not jsonb): original text, key order and whitespace are preserved';

INSERT INTO sales.orders (customer_id, warehouse_id, status, ordered_at, currency, shipping_address, coupon_codes)
SELECT 1 + h % 5000,
       CASE WHEN i % 29 = 0 THEN NULL ELSE (1 + (h >> 5) % 10)::smallint END,
       (ARRAY['pending', 'paid', 'paid', 'shipped', 'shipped', 'shipped', 'cancelled', 'refunded'])[1 + (h >> 9) % 8],
       timestamptz '2023-06-01 00:00:00+00' + i * interval '41 minutes 13 seconds',
       (ARRAY['EUR', 'EUR', 'USD', 'JPY', 'CHF'])[1 + (h >> 13) % 5],
       CASE
           WHEN i % 31 = 0 THEN NULL
           WHEN i % 101 = 0 THEN '{"street": "dup key", "street":  "second wins in jsonb" ,  "zip":null}'::json
           ELSE json_build_object('street', (h % 999) || ' Main St.', 'city',
                                  (ARRAY['Berlin', 'Tōkyō', 'Zürich', 'New York'])[1 + h % 4],
                                  'lines', json_build_array('c/o "Reception"', E'Floor\t3'))
       END,
       CASE WHEN i % 7 = 0 THEN ARRAY['SPRING', 'VIP' || (h % 10)] END
FROM (SELECT i, seed_hash('order' || i) AS h FROM generate_series(1, 15000) AS i) AS g
ORDER BY i;

CREATE TABLE sales.order_items (
    order_id   bigint  NOT NULL REFERENCES sales.orders (id) ON DELETE CASCADE,
    line_no    integer NOT NULL,
    product_id integer NOT NULL REFERENCES inventory.products (id),
    quantity   integer NOT NULL CHECK (quantity > 0),
    unit_price numeric(10, 2) NOT NULL,
    note       text,
    PRIMARY KEY (order_id, line_no)
);

INSERT INTO sales.order_items (order_id, line_no, product_id, quantity, unit_price, note)
SELECT o.id, l,
       (1 + seed_hash(o.id || ':' || l) % 2000)::int,
       (1 + seed_hash('q' || o.id || ':' || l) % 9)::int,
       round((seed_hash('p' || o.id || ':' || l) % 50000) / 100.0 + 0.5, 2),
       CASE WHEN (o.id + l) % 250 = 0 THEN E'gift wrap\tplease\\thanks' END
FROM sales.orders AS o,
     generate_series(1, 1 + (seed_hash('lines' || o.id) % 5)::int) AS l;

UPDATE sales.orders AS o
SET total = s.total
FROM (SELECT order_id, sum(quantity * unit_price) AS total
      FROM sales.order_items GROUP BY order_id) AS s
WHERE s.order_id = o.id AND o.status <> 'cancelled';

-- Intentionally empty table (with a foreign key).
CREATE TABLE sales.refunds (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id    bigint NOT NULL REFERENCES sales.orders (id),
    amount      numeric(12, 2) NOT NULL,
    reason      text,
    refunded_at timestamptz NOT NULL
);
COMMENT ON TABLE sales.refunds IS 'Intentionally left empty by the seed';

------------------------------------------------------------------------------
-- audit
------------------------------------------------------------------------------

-- No primary key on purpose (append-only log).
CREATE TABLE audit.events (
    occurred_at timestamptz NOT NULL,
    actor       text,
    action      text NOT NULL,
    amount      numeric,
    payload     jsonb,
    raw         bytea
);
COMMENT ON TABLE audit.events IS 'Append-only event log; deliberately has no primary key';

INSERT INTO audit.events (occurred_at, actor, action, amount, payload, raw)
SELECT timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute 3.5 seconds',
       CASE WHEN i % 10 = 0 THEN NULL ELSE 'user' || (1 + h % 5000) END,
       (ARRAY['login', 'logout', 'view', 'purchase', 'error'])[1 + h % 5],
       CASE
           WHEN i = 1 THEN 'NaN'::numeric
           WHEN i = 2 THEN 'Infinity'::numeric
           WHEN i = 3 THEN '-Infinity'::numeric
           WHEN i = 4 THEN 123456789012345678901234567890.123456789012345678901234567890
           WHEN i % 3 = 0 THEN NULL
           ELSE (h % 1000000) / 1000.0
       END,
       CASE WHEN i % 8 = 0 THEN NULL
            ELSE jsonb_build_object('seq', i, 'ip', '127.0.0.' || (h % 255),
                                    'ua', E'Mozilla/5.0 "quoted" \\ back', 'big', 12345678901234567890) END,
       CASE WHEN i % 2 = 0 THEN NULL ELSE decode(md5('raw' || i) || '005c00', 'hex') END
FROM (SELECT i, seed_hash('event' || i) AS h FROM generate_series(1, 5000) AS i) AS g;

CREATE TABLE audit.price_changes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id integer NOT NULL REFERENCES inventory.products (id) ON DELETE CASCADE,
    old_price  numeric(10, 2) NOT NULL,
    new_price  numeric(10, 2) NOT NULL,
    changed_at timestamptz NOT NULL,
    changed_by name NOT NULL
);

-- Trigger: record price changes. Uses the row's updated_at, not now(), so the
-- seeded audit rows are deterministic.
CREATE FUNCTION audit.log_price_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.price IS DISTINCT FROM OLD.price THEN
        INSERT INTO audit.price_changes (product_id, old_price, new_price, changed_at, changed_by)
        VALUES (OLD.id, OLD.price, NEW.price, NEW.updated_at, current_user);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER products_price_audit
    AFTER UPDATE OF price ON inventory.products
    FOR EACH ROW EXECUTE FUNCTION audit.log_price_change();

-- Fire the trigger for 400 products.
UPDATE inventory.products
SET price = round(price * 1.1, 2),
    updated_at = timestamptz '2024-07-01 09:00:00+00' + id * interval '1 minute'
WHERE id % 5 = 0;

------------------------------------------------------------------------------
-- functions, views, indexes
------------------------------------------------------------------------------

CREATE FUNCTION sales.order_total(p_order_id bigint) RETURNS numeric
    LANGUAGE sql STABLE
    AS $$ SELECT coalesce(sum(quantity * unit_price), 0)
          FROM sales.order_items WHERE order_id = p_order_id $$;
COMMENT ON FUNCTION sales.order_total(bigint) IS 'Sum of the order''s lines';

CREATE VIEW sales.customer_order_summary AS
SELECT c.id AS customer_id, c.email, c.full_name,
       count(o.id) AS orders,
       coalesce(sum(o.total), 0) AS lifetime_value,
       max(o.ordered_at) AS last_order_at
FROM sales.customers AS c
LEFT JOIN sales.orders AS o ON o.customer_id = c.id AND o.status <> 'cancelled'
WHERE c.deleted_at IS NULL
GROUP BY c.id, c.email, c.full_name;

CREATE MATERIALIZED VIEW sales.daily_revenue AS
SELECT (o.ordered_at AT TIME ZONE 'UTC')::date AS day,
       o.currency,
       count(*) AS orders,
       sum(o.total) AS revenue
FROM sales.orders AS o
WHERE o.status IN ('paid', 'shipped')
GROUP BY 1, 2;
CREATE UNIQUE INDEX daily_revenue_day_currency_idx ON sales.daily_revenue (day, currency);
COMMENT ON MATERIALIZED VIEW sales.daily_revenue IS 'Paid/shipped revenue per UTC day and currency';

-- btree
CREATE INDEX orders_customer_id_idx ON sales.orders (customer_id);
CREATE INDEX order_items_product_id_idx ON sales.order_items (product_id);
CREATE INDEX stock_levels_product_id_idx ON inventory.stock_levels (product_id);
CREATE INDEX events_occurred_at_idx ON audit.events (occurred_at);
-- partial
CREATE INDEX orders_pending_ordered_at_idx ON sales.orders (ordered_at) WHERE status = 'pending';
-- unique (expression)
CREATE UNIQUE INDEX customers_email_lower_key ON sales.customers (lower(email));
-- GIN
CREATE INDEX products_attributes_gin_idx ON inventory.products USING gin (attributes jsonb_path_ops);

------------------------------------------------------------------------------
-- privileges
------------------------------------------------------------------------------

GRANT USAGE ON SCHEMA sales TO app_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA sales TO app_reader;
GRANT EXECUTE ON FUNCTION sales.order_total(bigint) TO app_reader;

RESET ROLE;

COMMIT;

ANALYZE;
