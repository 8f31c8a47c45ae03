-- The double-entry ledger core.
--
-- Postings carry signed amounts: positive = debit, negative = credit; an entry's postings sum to zero.
-- Tenant-keyed: every table carries platform_id, it leads every primary key and index, and no
-- foreign key crosses platforms (so the schema can be distributed by platform later).
-- The database defends the ledger's invariants itself, even when the Python layer is bypassed:
--   * journal_entries and postings are append-only (UPDATE, DELETE and TRUNCATE are rejected);
--   * the postings of an entry sum to zero per currency, and an entry has at least two postings
--     (deferred constraint triggers, checked at commit);
--   * one currency per entry unless the entry says multi_currency;
--   * an account keeps its kind and currency;
--   * a posting's running balance continues the account's previous posting, and an account that
--     may not go negative never does (neither in a posting nor in its stored balance).

CREATE TABLE platforms (
    platform_id text PRIMARY KEY,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT platforms_id_format CHECK (platform_id ~ '^[a-z0-9][a-z0-9-]{0,39}$')
);

CREATE TABLE api_keys (
    platform_id text NOT NULL REFERENCES platforms (platform_id),
    key_id text NOT NULL,
    key_hash bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    PRIMARY KEY (platform_id, key_id)
);

CREATE TABLE accounts (
    platform_id text NOT NULL REFERENCES platforms (platform_id),
    account_id bigint GENERATED ALWAYS AS IDENTITY,
    code text NOT NULL,
    kind text NOT NULL,
    currency text NOT NULL DEFAULT 'IDR',
    allow_negative boolean NOT NULL DEFAULT false,
    -- Balances are kept in the account's normal direction: debits raise an asset's or an expense's
    -- balance, credits raise a liability's, equity's or revenue's. "May not go negative" is in
    -- that direction (a seller's payable never flips into a receivable unless allowed).
    normal_sign smallint GENERATED ALWAYS AS (CASE WHEN kind IN ('asset', 'expense') THEN 1 ELSE -1 END) STORED,
    balance bigint NOT NULL DEFAULT 0,
    version bigint NOT NULL DEFAULT 0,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform_id, account_id),
    CONSTRAINT accounts_code_unique UNIQUE (platform_id, code),
    CONSTRAINT accounts_kind_valid CHECK (kind IN ('asset', 'liability', 'equity', 'revenue', 'expense')),
    CONSTRAINT accounts_currency_format CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT accounts_balance_non_negative CHECK (allow_negative OR balance >= 0),
    CONSTRAINT accounts_version_non_negative CHECK (version >= 0)
);

CREATE TABLE journal_entries (
    platform_id text NOT NULL REFERENCES platforms (platform_id),
    entry_id bigint GENERATED ALWAYS AS IDENTITY,
    kind text NOT NULL,
    idempotency_key text NOT NULL,
    content_hash bytea NOT NULL,
    external_ref text,
    multi_currency boolean NOT NULL DEFAULT false,
    effective_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (platform_id, entry_id),
    CONSTRAINT journal_entries_idempotency_key_unique UNIQUE (platform_id, idempotency_key),
    CONSTRAINT journal_entries_kind_nonempty CHECK (kind <> '')
);
CREATE INDEX journal_entries_external_ref ON journal_entries (platform_id, external_ref)
    WHERE external_ref IS NOT NULL;

CREATE TABLE postings (
    platform_id text NOT NULL,
    posting_id bigint GENERATED ALWAYS AS IDENTITY,
    entry_id bigint NOT NULL,
    account_id bigint NOT NULL,
    amount bigint NOT NULL,
    currency text NOT NULL,
    balance_after bigint NOT NULL,
    account_version bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (platform_id, posting_id),
    FOREIGN KEY (platform_id, entry_id) REFERENCES journal_entries (platform_id, entry_id),
    FOREIGN KEY (platform_id, account_id) REFERENCES accounts (platform_id, account_id),
    CONSTRAINT postings_amount_nonzero CHECK (amount <> 0),
    CONSTRAINT postings_account_version_unique UNIQUE (platform_id, account_id, account_version),
    CONSTRAINT postings_account_version_positive CHECK (account_version > 0)
);
CREATE INDEX postings_entry ON postings (platform_id, entry_id);
-- Point-in-time balances are one index lookup: the last posting at or before the instant.
CREATE INDEX postings_account_time ON postings (platform_id, account_id, created_at, account_version)
    INCLUDE (balance_after);

-- Append-only.
CREATE FUNCTION ledger_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % rejected', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation', CONSTRAINT = TG_TABLE_NAME || '_append_only';
END;
$$;
CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER journal_entries_append_only BEFORE UPDATE OR DELETE ON journal_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER journal_entries_no_truncate BEFORE TRUNCATE ON journal_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

-- An account's kind (hence normal_sign) and currency give its postings their meaning: changing
-- either would reinterpret every balance and unbalance the trial balance.
CREATE FUNCTION ledger_reject_account_redefinition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind IS DISTINCT FROM OLD.kind OR NEW.currency IS DISTINCT FROM OLD.currency THEN
        RAISE EXCEPTION 'account % keeps its kind and currency', OLD.account_id
            USING ERRCODE = 'restrict_violation', CONSTRAINT = 'accounts_kind_currency_fixed';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER accounts_kind_currency_fixed BEFORE UPDATE OF kind, currency ON accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_account_redefinition();

-- A posting continues its account's running balance, keeps its currency, and never overdraws.
CREATE FUNCTION ledger_check_posting() RETURNS trigger LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    acct record;
    previous bigint;
    previous_at timestamptz;
BEGIN
    SELECT currency, allow_negative, normal_sign INTO acct FROM accounts
     WHERE platform_id = NEW.platform_id AND account_id = NEW.account_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'posting to unknown account %', NEW.account_id
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'postings_account_exists';
    END IF;
    IF acct.currency <> NEW.currency THEN
        RAISE EXCEPTION 'posting currency % differs from account currency %', NEW.currency, acct.currency
            USING ERRCODE = 'check_violation', CONSTRAINT = 'postings_currency_matches_account';
    END IF;
    IF NEW.account_version = 1 THEN
        previous := 0;
    ELSE
        SELECT balance_after, created_at INTO previous, previous_at FROM postings
         WHERE platform_id = NEW.platform_id AND account_id = NEW.account_id
           AND account_version = NEW.account_version - 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'posting version % of account % does not follow a previous posting',
                NEW.account_version, NEW.account_id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'postings_running_balance';
        END IF;
        -- Point-in-time balances read the last posting at or before an instant: an account's
        -- postings must therefore never be recorded out of time order.
        IF NEW.created_at < previous_at THEN
            RAISE EXCEPTION 'posting of account % recorded at % before its previous posting (%)',
                NEW.account_id, NEW.created_at, previous_at
                USING ERRCODE = 'check_violation', CONSTRAINT = 'postings_recorded_in_order';
        END IF;
    END IF;
    IF NEW.balance_after <> previous + NEW.amount * acct.normal_sign THEN
        RAISE EXCEPTION 'running balance % <> % + % * %', NEW.balance_after, previous, NEW.amount, acct.normal_sign
            USING ERRCODE = 'check_violation', CONSTRAINT = 'postings_running_balance';
    END IF;
    IF NOT acct.allow_negative AND NEW.balance_after < 0 THEN
        RAISE EXCEPTION 'account % may not go negative', NEW.account_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'postings_balance_non_negative';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER postings_check BEFORE INSERT ON postings
    FOR EACH ROW EXECUTE FUNCTION ledger_check_posting();

-- Every entry balances (per currency), has at least two postings, and keeps to one currency
-- unless it says otherwise; every account's stored balance and version equal its last posting.
-- Deferred to commit so an entry's postings and the account update can come in any order.
CREATE FUNCTION ledger_assert_entry_balanced(p_platform text, p_entry bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    unbalanced integer;
    currencies integer;
    posting_count integer;
    is_multi boolean;
BEGIN
    SELECT count(*) FILTER (WHERE total <> 0), count(*), coalesce(sum(n), 0)
      INTO unbalanced, currencies, posting_count
      FROM (SELECT currency, sum(amount) AS total, count(*) AS n FROM postings
             WHERE platform_id = p_platform AND entry_id = p_entry
             GROUP BY currency) AS per_currency;
    IF posting_count < 2 THEN
        RAISE EXCEPTION 'journal entry % has % postings (at least 2 needed)', p_entry, posting_count
            USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_entries_has_postings';
    END IF;
    IF unbalanced > 0 THEN
        RAISE EXCEPTION 'journal entry % does not balance', p_entry
            USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_entries_balanced';
    END IF;
    IF currencies > 1 THEN
        SELECT multi_currency INTO is_multi FROM journal_entries
         WHERE platform_id = p_platform AND entry_id = p_entry;
        IF NOT is_multi THEN
            RAISE EXCEPTION 'journal entry % mixes currencies', p_entry
                USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_entries_single_currency';
        END IF;
    END IF;
END;
$$;

CREATE FUNCTION ledger_assert_account_consistent(p_platform text, p_account bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    last_balance bigint := 0;
    last_version bigint := 0;
    stored_balance bigint;
    stored_version bigint;
BEGIN
    SELECT balance_after, account_version INTO last_balance, last_version FROM postings
     WHERE platform_id = p_platform AND account_id = p_account
     ORDER BY account_version DESC LIMIT 1;
    IF NOT FOUND THEN
        last_balance := 0;
        last_version := 0;
    END IF;
    SELECT balance, version INTO stored_balance, stored_version FROM accounts
     WHERE platform_id = p_platform AND account_id = p_account;
    IF stored_balance <> last_balance OR stored_version <> last_version THEN
        RAISE EXCEPTION 'account % balance/version (%/%) disagree with its last posting (%/%)',
            p_account, stored_balance, stored_version, last_balance, last_version
            USING ERRCODE = 'check_violation', CONSTRAINT = 'accounts_balance_matches_postings';
    END IF;
END;
$$;

CREATE FUNCTION ledger_check_entry_committed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_assert_entry_balanced(NEW.platform_id, NEW.entry_id);
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER journal_entries_balanced AFTER INSERT ON journal_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_entry_committed();

-- At commit, each posting's account must have caught up with it (a posting written without its
-- account update is refused), and a posting added to an entry of an earlier transaction (or of a
-- savepoint) re-checks that entry. An entry created in this transaction is checked once by its own
-- trigger above, so the common case costs one primary-key lookup per posting, not a re-sum.
CREATE FUNCTION ledger_check_posting_committed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    stored_balance bigint;
    stored_version bigint;
BEGIN
    SELECT balance, version INTO stored_balance, stored_version FROM accounts
     WHERE platform_id = NEW.platform_id AND account_id = NEW.account_id;
    IF stored_version < NEW.account_version
       OR (stored_version = NEW.account_version AND stored_balance <> NEW.balance_after) THEN
        RAISE EXCEPTION 'account % balance/version (%/%) disagree with its posting % (%/%)',
            NEW.account_id, stored_balance, stored_version, NEW.posting_id, NEW.balance_after, NEW.account_version
            USING ERRCODE = 'check_violation', CONSTRAINT = 'accounts_balance_matches_postings';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM journal_entries
                    WHERE platform_id = NEW.platform_id AND entry_id = NEW.entry_id
                      AND xmin = pg_current_xact_id()::xid) THEN
        PERFORM ledger_assert_entry_balanced(NEW.platform_id, NEW.entry_id);
    END IF;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER postings_committed AFTER INSERT ON postings
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_posting_committed();

CREATE FUNCTION ledger_check_account_committed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_assert_account_consistent(NEW.platform_id, NEW.account_id);
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER accounts_balance_matches_postings AFTER UPDATE OF balance, version ON accounts
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_account_committed();
