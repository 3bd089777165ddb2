-- Consent, its signed receipts, the installation's signing key and the audit log (docs/consent.md,
-- docs/store.md). Text columns use the "C" collation, as in 0001.

-- One request of a service for an owner's data, and where the owner's decision left it.
-- types and third_parties are lists of names joined by newlines (neither may contain one).
-- status: pending, granted, refused or revoked.
CREATE TABLE consents (
    id             TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    service        TEXT COLLATE "C" NOT NULL,
    owner          TEXT COLLATE "C" NOT NULL,
    types          TEXT COLLATE "C" NOT NULL,
    purpose        TEXT COLLATE "C" NOT NULL,
    retention_days INTEGER          NOT NULL,
    third_parties  TEXT COLLATE "C" NOT NULL,
    status         TEXT COLLATE "C" NOT NULL,
    created_ms     BIGINT           NOT NULL,
    decided_ms     BIGINT
);
CREATE INDEX consents_owner ON consents (owner, created_ms);
CREATE INDEX consents_service ON consents (service, created_ms);
-- The nodes reload the granted consents whenever consent_version moves.
CREATE INDEX consents_granted ON consents (status) WHERE status = 'granted';

-- One signed receipt (compact JWS) per decision.
CREATE TABLE consent_receipts (
    receipt_id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    consent_id TEXT COLLATE "C" NOT NULL REFERENCES consents (id),
    owner      TEXT COLLATE "C" NOT NULL,
    status     TEXT COLLATE "C" NOT NULL,
    jws        TEXT COLLATE "C" NOT NULL,
    created_ms BIGINT           NOT NULL
);
CREATE INDEX consent_receipts_consent ON consent_receipts (consent_id, created_ms);
CREATE INDEX consent_receipts_owner ON consent_receipts (owner, created_ms);

-- Moves by one in the transaction of every decision: a node polls this one row and reloads the
-- granted consents only when it changed.
CREATE TABLE consent_version (
    id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    version BIGINT  NOT NULL
);
INSERT INTO consent_version (id, version) VALUES (1, 0);

-- Secrets of the installation, shared by every node of a cluster through the store: the
-- receipts' Ed25519 seed ('receipt-signing'). The first node to start writes it; later ones read.
CREATE TABLE installation_secrets (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    secret     BYTEA            NOT NULL,
    created_ms BIGINT           NOT NULL
);

-- Every read of an owner's data by anyone but the owner. Append-only: nothing updates a row.
CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner       TEXT COLLATE "C" NOT NULL,
    actor_kind  TEXT COLLATE "C" NOT NULL,
    actor       TEXT COLLATE "C" NOT NULL,
    channel     TEXT COLLATE "C" NOT NULL,
    detail      TEXT COLLATE "C" NOT NULL,
    device      TEXT COLLATE "C" NOT NULL,
    consent_id  TEXT COLLATE "C",
    count       BIGINT           NOT NULL,
    first_ms    BIGINT           NOT NULL,
    last_ms     BIGINT           NOT NULL,
    recorded_ms BIGINT           NOT NULL
);
CREATE INDEX audit_log_owner ON audit_log (owner, id);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
