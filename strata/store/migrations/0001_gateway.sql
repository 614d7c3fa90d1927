-- 0001: the gateway's durable state: tenants, users, API keys, audit log, usage ledger.
-- Limit columns mirror strata.gateway.principal.Limits; NULL means "no limit of that kind".

CREATE TABLE tenants (
    name             text PRIMARY KEY,
    require_dpa      boolean NOT NULL DEFAULT false,
    rpm              integer CHECK (rpm >= 0),
    tpm              bigint CHECK (tpm >= 0),
    concurrent       integer CHECK (concurrent >= 0),
    daily_tokens     bigint CHECK (daily_tokens >= 0),
    monthly_tokens   bigint CHECK (monthly_tokens >= 0),
    daily_cost_usd   numeric(18, 6) CHECK (daily_cost_usd >= 0),
    monthly_cost_usd numeric(18, 6) CHECK (monthly_cost_usd >= 0),
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    tenant           text NOT NULL REFERENCES tenants (name),
    name             text NOT NULL,
    rpm              integer CHECK (rpm >= 0),
    tpm              bigint CHECK (tpm >= 0),
    concurrent       integer CHECK (concurrent >= 0),
    daily_tokens     bigint CHECK (daily_tokens >= 0),
    monthly_tokens   bigint CHECK (monthly_tokens >= 0),
    daily_cost_usd   numeric(18, 6) CHECK (daily_cost_usd >= 0),
    monthly_cost_usd numeric(18, 6) CHECK (monthly_cost_usd >= 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, name)
);

CREATE TABLE api_keys (
    key_id           text PRIMARY KEY,            -- public: the <keyid> in sk-strata-<keyid>_<secret>
    tenant           text NOT NULL,
    user_name        text NOT NULL,
    role             text NOT NULL CHECK (role IN ('admin', 'user')),
    key_hash         bytea NOT NULL CHECK (length(key_hash) = 32),  -- SHA-256 of the full key
    models           text[],                      -- NULL: every model
    collections      text[],                      -- NULL: every RAG collection
    rpm              integer CHECK (rpm >= 0),
    tpm              bigint CHECK (tpm >= 0),
    concurrent       integer CHECK (concurrent >= 0),
    daily_tokens     bigint CHECK (daily_tokens >= 0),
    monthly_tokens   bigint CHECK (monthly_tokens >= 0),
    daily_cost_usd   numeric(18, 6) CHECK (daily_cost_usd >= 0),
    monthly_cost_usd numeric(18, 6) CHECK (monthly_cost_usd >= 0),
    name             text,
    description      text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz,
    revoked_at       timestamptz,
    last_used_at     timestamptz,
    FOREIGN KEY (tenant, user_name) REFERENCES users (tenant, name)
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant, created_at);
CREATE INDEX api_keys_admin_idx ON api_keys (role) WHERE role = 'admin';

CREATE TABLE audit_log (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     timestamptz NOT NULL DEFAULT now(),
    actor  text NOT NULL,                         -- the admin key id, or 'cli' / 'bootstrap'
    action text NOT NULL,                         -- e.g. 'key.create', 'tenant.update'
    target text NOT NULL,                         -- key id, tenant name or 'tenant/user'
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_target_idx ON audit_log (target, at);

-- One row per finished gateway request. `id` is assigned by the ledger writer when a batch is
-- formed, so a batch retried after an unknown commit outcome is not counted twice;
-- request_id is the caller-visible x-request-id and is deliberately not unique.
CREATE TABLE usage_ledger (
    id                uuid PRIMARY KEY,
    request_id        text NOT NULL,
    at                timestamptz NOT NULL,
    tenant            text NOT NULL,
    user_name         text NOT NULL,
    key_id            text NOT NULL,
    model             text NOT NULL,
    upstream          text,
    prompt_tokens     integer NOT NULL DEFAULT 0,
    completion_tokens integer NOT NULL DEFAULT 0,
    cached_tokens     integer NOT NULL DEFAULT 0,
    ttft_ms           double precision,
    duration_ms       double precision NOT NULL DEFAULT 0,
    status            integer NOT NULL,
    error_code        text,
    cost_usd          numeric(18, 8) NOT NULL DEFAULT 0
);
-- Every gateway request writes a row, so each index here is paid per request. The table is
-- append-only in time order: one BRIN index on `at` (a few pages, nearly free to maintain)
-- narrows reports and the limiter's period sums to their day or month, which they then
-- aggregate; `request_id` keeps a btree so one request can be traced. Ids are time-ordered
-- (UUIDv7), so the primary key grows at its right edge instead of splitting random pages.
CREATE INDEX usage_ledger_at_brin ON usage_ledger USING brin (at);
CREATE INDEX usage_ledger_request_id_idx ON usage_ledger (request_id);
