-- Who may call `vigil serve`'s API, and what each caller did, in a database of their own
-- (`<db>_audit`): the commission's and the bureau's ClickHouse users cannot read it (ClickHouse
-- 18.16 grants per database), only the operator role through the API and the stage that serves it.
CREATE DATABASE IF NOT EXISTS {db}_audit;

-- Bearer tokens (`vigil token add|list|revoke`): the SHA-256 of the secret, never the secret; a
-- revocation is a new version of the row.
CREATE TABLE IF NOT EXISTS {db}_audit.api_tokens
(
    token_id       String,
    name           String,
    -- commission, insurance, hospital or operator
    role           String,
    -- The hospital a `hospital` token is scoped to; empty for the other roles.
    hospital_id    String,
    secret_sha256  String,
    created_ms     Int64,
    -- 0 while the token is valid.
    revoked_ms     Int64,
    version        UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY token_id;

-- Every API call and page load: when, who (token and role, never the secret), the hospital it
-- was scoped to, what it asked for, how many rows it got and how it ended. Kept by month
-- partitions; MLPS level 3 asks for at least six months (ClickHouse 18.16 has no TTL: an operator
-- drops months past the retention the regulator sets, see ARCHITECTURE.md).
CREATE TABLE IF NOT EXISTS {db}_audit.audit_log
(
    time            DateTime,
    time_ms         Int64,
    request_id      String,
    -- empty for a call without a valid token (it was refused)
    token_id        String,
    role            String,
    hospital_scope  String,
    method          String,
    endpoint        String,
    parameters      String,
    status          UInt16,
    rows            UInt64,
    duration_ms     Float64
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (time, request_id);
