-- DOKU Secret Keys at rest: encrypted with AES-256-GCM by the service (ledger/store/encryption.py)
-- under a key the database never sees. The plaintext column stays only until the service encrypts the
-- rows written before this migration (at its next start); from now on nothing may write plaintext.
ALTER TABLE gateways ADD COLUMN secret_key_encrypted bytea;
ALTER TABLE gateways ALTER COLUMN secret_key DROP NOT NULL;

ALTER TABLE gateways
    ADD CONSTRAINT gateways_secret_key_present CHECK (secret_key IS NOT NULL OR secret_key_encrypted IS NOT NULL),
    -- NOT VALID: old rows keep their plaintext until encrypted; every insert and update is checked.
    ADD CONSTRAINT gateways_secret_key_not_plaintext CHECK (secret_key IS NULL) NOT VALID,
    -- version 1 || key id (8) || nonce (12) || ciphertext || tag (16)
    ADD CONSTRAINT gateways_secret_key_encrypted_shape CHECK (
        secret_key_encrypted IS NULL OR (get_byte(secret_key_encrypted, 0) = 1 AND length(secret_key_encrypted) >= 37));
