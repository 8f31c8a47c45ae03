-- API keys are managed through the API (POST/GET/DELETE /v1/api-keys): several live keys per
-- platform for rotation, each with an optional name saying where it is used.
ALTER TABLE api_keys
    ADD COLUMN name text,
    ADD CONSTRAINT api_keys_name_length CHECK (name IS NULL OR char_length(name) BETWEEN 1 AND 200);

CREATE INDEX api_keys_live ON api_keys (platform_id) WHERE revoked_at IS NULL;
