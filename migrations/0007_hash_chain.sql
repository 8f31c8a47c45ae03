-- Tamper evidence: every journal entry's hash, computed in its posting transaction, and a chain of
-- signed blocks over them, sealed asynchronously (ledger/service/sealer.py).
--
-- The entry hash is SHA-256 over a canonical text of the entry and its postings (format
-- "splitledger-entry-v1", written out in ledger/chain.py, which `splitledger verify` recomputes from
-- the raw rows). It is computed set-based by a statement-level trigger on postings: one INSERT of
-- many entries' postings (the store writes all postings of a batch in one statement) hashes them all
-- at once, and no shared lock is taken. Entries written outside the posting path (with triggers off)
-- get no hash; verify names them.

CREATE TABLE entry_hashes (
    platform_id text NOT NULL,
    entry_id bigint NOT NULL,
    hash bytea NOT NULL,
    PRIMARY KEY (platform_id, entry_id),
    FOREIGN KEY (platform_id, entry_id) REFERENCES journal_entries (platform_id, entry_id),
    CONSTRAINT entry_hashes_sha256 CHECK (octet_length(hash) = 32)
);

-- Length-prefixed fields make the canonical text unambiguous; NULL is "-".
CREATE FUNCTION ledger_field(v text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN v IS NULL THEN '-' ELSE octet_length(v)::text || ':' || v END
$$;

CREATE FUNCTION ledger_micros(t timestamptz) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT floor(extract(epoch FROM t) * 1000000)::bigint::text
$$;

CREATE FUNCTION ledger_hash_entries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO entry_hashes (platform_id, entry_id, hash)
    SELECT e.platform_id, e.entry_id,
           sha256(convert_to(concat_ws(E'\n',
               'splitledger-entry-v1',
               ledger_field(e.platform_id),
               e.entry_id::text,
               ledger_field(e.kind),
               ledger_field(e.idempotency_key),
               encode(e.content_hash, 'hex'),
               ledger_field(e.external_ref),
               e.multi_currency::text,
               ledger_micros(e.effective_at),
               ledger_micros(e.created_at),
               ledger_field(e.metadata::text),
               p.lines), 'UTF8'))
      FROM (SELECT n.platform_id, n.entry_id,
                   string_agg(concat_ws(',', n.posting_id, n.account_id, n.amount, ledger_field(n.currency),
                                        n.balance_after, n.account_version, ledger_micros(n.created_at)),
                              E'\n' ORDER BY n.posting_id) AS lines
              FROM new_postings n GROUP BY n.platform_id, n.entry_id) AS p
      JOIN journal_entries e ON e.platform_id = p.platform_id AND e.entry_id = p.entry_id
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;

CREATE TRIGGER postings_hash_entries AFTER INSERT ON postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_hash_entries();

-- Blocks: each platform's entries, in the order the sealer found them committed (by entry id within a
-- block), with a Merkle root over their hashes and the previous block's hash; each block's hash is
-- signed (Ed25519) as a checkpoint an auditor can keep outside the database.
CREATE TABLE chain_blocks (
    platform_id text NOT NULL REFERENCES platforms (platform_id),
    block_no bigint NOT NULL,
    entry_count integer NOT NULL,
    total_entries bigint NOT NULL,          -- entries sealed up to and including this block
    first_entry_id bigint NOT NULL,
    last_entry_id bigint NOT NULL,
    merkle_root bytea NOT NULL,
    prev_hash bytea NOT NULL,
    block_hash bytea NOT NULL,
    key_id text NOT NULL,
    signature bytea NOT NULL,
    sealed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform_id, block_no),
    CONSTRAINT chain_blocks_block_no_positive CHECK (block_no > 0),
    CONSTRAINT chain_blocks_entries_positive CHECK (entry_count > 0)
);

CREATE TABLE chain_members (
    platform_id text NOT NULL,
    entry_id bigint NOT NULL,
    block_no bigint NOT NULL,
    position integer NOT NULL,
    PRIMARY KEY (platform_id, entry_id),
    FOREIGN KEY (platform_id, block_no) REFERENCES chain_blocks (platform_id, block_no),
    CONSTRAINT chain_members_position_unique UNIQUE (platform_id, block_no, position)
);

CREATE TRIGGER entry_hashes_append_only BEFORE UPDATE OR DELETE ON entry_hashes
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER chain_blocks_append_only BEFORE UPDATE OR DELETE ON chain_blocks
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER chain_members_append_only BEFORE UPDATE OR DELETE ON chain_members
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
