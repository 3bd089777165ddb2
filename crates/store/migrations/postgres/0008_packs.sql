-- Pooled data packs (docs/packs.md, docs/store.md): what buyers define, who takes part, what was
-- released, and each owner's privacy budget and earnings.

-- A buyer's pack. spec is the release's definition as JSON (days, bounds, ε, aggregates, k),
-- read by the API; the columns are what lists and cohorts filter on.
CREATE TABLE packs (
    id          TEXT    NOT NULL PRIMARY KEY,
    buyer       TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    measurement TEXT    NOT NULL,
    purpose     TEXT    NOT NULL,
    spec        TEXT    NOT NULL,
    age_band    TEXT,
    region      TEXT,
    price_cents BIGINT  NOT NULL,
    currency    TEXT    NOT NULL,
    created_ms  BIGINT  NOT NULL
);
CREATE INDEX packs_buyer ON packs (buyer, created_ms);
CREATE INDEX packs_created ON packs (created_ms);

-- An owner's opt-in to a pack, with the signed receipts of joining and of withdrawing. A
-- withdrawn owner is left out of every later release; joining again replaces the row.
CREATE TABLE pack_participants (
    pack_id          TEXT    NOT NULL REFERENCES packs (id),
    owner            TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    joined_ms        BIGINT  NOT NULL,
    withdrawn_ms     BIGINT,
    receipt          TEXT    NOT NULL,
    withdraw_receipt TEXT,
    PRIMARY KEY (pack_id, owner)
);
CREATE INDEX pack_participants_owner ON pack_participants (owner, joined_ms);

-- One release of a pack: its published body (figures and noise parameters) as JSON.
CREATE TABLE pack_releases (
    pack_id      TEXT    NOT NULL REFERENCES packs (id),
    seq          BIGINT  NOT NULL,
    released_ms  BIGINT  NOT NULL,
    participants BIGINT  NOT NULL,
    body         TEXT    NOT NULL,
    PRIMARY KEY (pack_id, seq)
);

-- What each release cost each participant in ε and paid them: the privacy-budget and earnings
-- ledgers in one. Append-only.
CREATE TABLE pack_ledger (
    owner        TEXT    NOT NULL,
    pack_id      TEXT    NOT NULL,
    seq          BIGINT  NOT NULL,
    epsilon      DOUBLE PRECISION NOT NULL,
    amount_cents BIGINT  NOT NULL,
    currency     TEXT    NOT NULL,
    at_ms        BIGINT  NOT NULL,
    PRIMARY KEY (owner, pack_id, seq)
);
CREATE FUNCTION pack_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the pack ledger is append-only';
END;
$$;
CREATE TRIGGER pack_ledger_append_only BEFORE UPDATE ON pack_ledger
    FOR EACH ROW EXECUTE FUNCTION pack_ledger_append_only();

-- Each owner's ceiling on the ε spent on their data, and the profile fields they chose to share
-- for pack cohorts. An owner without a row has the default ceiling and shares nothing.
CREATE TABLE pack_settings (
    owner          TEXT NOT NULL PRIMARY KEY,
    budget_ceiling DOUBLE PRECISION NOT NULL,
    age_band       TEXT,
    region         TEXT
);
