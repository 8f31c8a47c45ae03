-- The ledger's invariants, checked set-based: once per statement and once per transaction, over
-- the rows written, instead of once per row.
--
-- 0001 defended the ledger with per-row PL/pgSQL triggers: two lookups before each posting (its
-- account, its previous posting), and at commit one more per posting, one per updated account and
-- a re-sum per entry; and with foreign keys, whose checks are per-row lookups too (a posting's
-- entry and account, an entry's platform). Under a flash sale those per-row calls were the
-- measured cost per capture (the foreign keys alone about as much as all the triggers). The
-- invariants are unchanged (tests/integration/test_db_invariants.py checks every one of them, by
-- SQLSTATE and constraint name); only when and how they are checked changes:
--
--   after each INSERT/COPY into journal_entries (a statement-level trigger):
--     * the entry's platform exists (and is locked KEY SHARE)     journal_entries_platform_id_fkey
--   after each INSERT/COPY into postings (one statement-level trigger over its transition table):
--     * the posting's entry exists on the posting's platform     postings_platform_id_entry_id_fkey
--     * the posting's account exists on the posting's platform   postings_account_exists
--       (and is locked KEY SHARE until commit, as a foreign key locks what it references)
--     * the posting's currency is its account's                   postings_currency_matches_account
--     * its running balance continues the account's previous      postings_running_balance
--       posting (in the same statement, or the stored one)
--     * an account's postings are recorded in time order          postings_recorded_in_order
--     * an account that may not go negative never does            postings_balance_non_negative
--   at commit (one deferred check per transaction, fed by the statement-level triggers of
--   postings, journal_entries and accounts through ledger_pending_checks):
--     * every entry written or posted to has at least two         journal_entries_has_postings
--       postings, balances per currency, and keeps to one         journal_entries_balanced
--       currency unless it says multi_currency                    journal_entries_single_currency
--     * every account posted to or updated has the stored         accounts_balance_matches_postings
--       balance and version of its last posting
--
-- The commit-time check needs no table lookups in the common case (entries created and posted in
-- the same transaction, accounts posted and updated in it): the statement-level triggers record
-- the per-entry sums and the last posting and last update of each account as they go, and the
-- check compares those. Only an entry of an earlier transaction that gets a posting is re-summed
-- from the table, and only an account posted without an update (or updated without a posting) is
-- read back. Rolled-back savepoints roll back what their statements recorded, with their rows.
--
-- The foreign keys those checks replace keep their names (a refusal reads as before); what else
-- a foreign key guaranteed is kept by guards on the rows referenced, never on the hot path:
-- journal entries are append-only (0001: no UPDATE, DELETE or TRUNCATE); an account with postings
-- cannot be deleted (postings_account_exists), no account changes its key (accounts_key_fixed),
-- and accounts are never truncated (refused as the postings' own TRUNCATE is, postings_append_only:
-- it would take the append-only postings' accounts away, where the foreign key's CASCADE reached
-- the postings and was refused there).
--
-- ledger_pending_checks is UNLOGGED: a row lives only inside its own transaction (inserted by the
-- first ledger write, deleted by the check at commit), so it needs no WAL and survives no crash.
--
-- Citus (distributed by platform_id): statement-level triggers and transition tables are refused on
-- distributed tables (citusdata/citus#5705; only row-level triggers are propagated, with
-- citus.enable_unsafe_triggers). There, the foreign keys come back (Citus supports them between
-- co-located tables distributed by the same column) and the checks run as row-level triggers on
-- each shard: 0001's functions stay in the schema for that, and read only rows of the posting's own
-- platform, so they never leave its shard; at the per-row cost. See BENCHMARKS.md.

-- Parallel arrays of plain values (cheaper to append to and to unnest than arrays of records).
CREATE UNLOGGED TABLE ledger_pending_checks (
    txid xid8 PRIMARY KEY,
    -- entries inserted by this transaction
    e_platform text[] NOT NULL DEFAULT '{}', e_entry bigint[] NOT NULL DEFAULT '{}',
    -- its postings, summed per entry and currency (one element per statement, entry and currency)
    t_platform text[] NOT NULL DEFAULT '{}', t_entry bigint[] NOT NULL DEFAULT '{}',
    t_currency text[] NOT NULL DEFAULT '{}', t_total numeric[] NOT NULL DEFAULT '{}',
    t_count bigint[] NOT NULL DEFAULT '{}',
    -- each account's last posting, per statement
    p_platform text[] NOT NULL DEFAULT '{}', p_account bigint[] NOT NULL DEFAULT '{}',
    p_version bigint[] NOT NULL DEFAULT '{}', p_balance bigint[] NOT NULL DEFAULT '{}',
    -- each account's balance and version after each update, in order
    u_platform text[] NOT NULL DEFAULT '{}', u_account bigint[] NOT NULL DEFAULT '{}',
    u_version bigint[] NOT NULL DEFAULT '{}', u_balance bigint[] NOT NULL DEFAULT '{}'
);
ALTER TABLE ledger_pending_checks SET (autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 1000);
-- A batch's arrays are tens of kilobytes and rewritten by each statement: out of line, never
-- compressed (compressing them cost more than checking them).
ALTER TABLE ledger_pending_checks
    ALTER COLUMN e_platform SET STORAGE EXTERNAL, ALTER COLUMN e_entry SET STORAGE EXTERNAL,
    ALTER COLUMN t_platform SET STORAGE EXTERNAL, ALTER COLUMN t_entry SET STORAGE EXTERNAL,
    ALTER COLUMN t_currency SET STORAGE EXTERNAL, ALTER COLUMN t_total SET STORAGE EXTERNAL,
    ALTER COLUMN t_count SET STORAGE EXTERNAL,
    ALTER COLUMN p_platform SET STORAGE EXTERNAL, ALTER COLUMN p_account SET STORAGE EXTERNAL,
    ALTER COLUMN p_version SET STORAGE EXTERNAL, ALTER COLUMN p_balance SET STORAGE EXTERNAL,
    ALTER COLUMN u_platform SET STORAGE EXTERNAL, ALTER COLUMN u_account SET STORAGE EXTERNAL,
    ALTER COLUMN u_version SET STORAGE EXTERNAL, ALTER COLUMN u_balance SET STORAGE EXTERNAL;

-- The old per-row checks go; their functions stay (the per-row variant for Citus shards).
DROP TRIGGER postings_check ON postings;
ALTER TABLE postings DROP CONSTRAINT postings_platform_id_account_id_fkey,
                     DROP CONSTRAINT postings_platform_id_entry_id_fkey;
ALTER TABLE journal_entries DROP CONSTRAINT journal_entries_platform_id_fkey;
DROP TRIGGER journal_entries_balanced ON journal_entries;
DROP TRIGGER postings_committed ON postings;
DROP TRIGGER accounts_balance_matches_postings ON accounts;

-- After each statement that inserts postings --------------------------------------------------

CREATE FUNCTION ledger_postings_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    IF NOT EXISTS (SELECT FROM inserted) THEN
        RETURN NULL;
    END IF;
    -- Each posting's entry exists on its platform (entries are append-only: once there, always).
    SELECT n.entry_id INTO bad
      FROM (SELECT DISTINCT platform_id, entry_id FROM inserted) n
      LEFT JOIN LATERAL (
          SELECT true AS found FROM journal_entries e
           WHERE e.platform_id = n.platform_id AND e.entry_id = n.entry_id LIMIT 1
      ) e ON true
     WHERE e.found IS NULL
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'posting to journal entry % of no such entry on its platform', bad.entry_id
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'postings_platform_id_entry_id_fkey';
    END IF;

    -- Each posting against its account and its predecessor: the posting before it in this
    -- statement, or else the account's stored previous posting. Lookups are per account and
    -- statement, not per posting (LATERAL ... LIMIT 1 keeps them index probes whatever the
    -- planner guesses about the transition table).
    WITH ordered AS MATERIALIZED (
        SELECT n.posting_id, n.platform_id, n.account_id, n.account_version, n.amount, n.currency,
               n.balance_after, n.created_at,
               lag(n.account_version) OVER w AS here_version,
               lag(n.balance_after) OVER w AS here_balance,
               lag(n.created_at) OVER w AS here_at
          FROM inserted n
        WINDOW w AS (PARTITION BY n.platform_id, n.account_id ORDER BY n.account_version)
    ), account AS MATERIALIZED (
        SELECT k.platform_id, k.account_id, a.currency, a.allow_negative, a.normal_sign
          FROM (SELECT DISTINCT platform_id, account_id FROM inserted) k
          LEFT JOIN LATERAL (
              SELECT a.currency, a.allow_negative, a.normal_sign FROM accounts a
               WHERE a.platform_id = k.platform_id AND a.account_id = k.account_id
               LIMIT 1 FOR KEY SHARE
          ) a ON true
    ), checked AS (
        SELECT o.posting_id, o.account_id, o.account_version, o.amount, o.balance_after, o.created_at,
               o.currency, a.currency IS NULL AS no_account, a.currency AS account_currency, a.allow_negative,
               a.normal_sign,
               CASE WHEN o.here_version = o.account_version - 1 THEN o.here_balance
                    WHEN o.account_version = 1 THEN 0
                    ELSE stored.balance_after END AS previous,
               CASE WHEN o.here_version = o.account_version - 1 THEN o.here_at ELSE stored.created_at END AS previous_at
          FROM ordered o
          JOIN account a ON a.platform_id = o.platform_id AND a.account_id = o.account_id
          LEFT JOIN LATERAL (
              SELECT p.balance_after, p.created_at FROM postings p
               WHERE o.here_version IS DISTINCT FROM o.account_version - 1 AND o.account_version > 1
                 AND p.platform_id = o.platform_id AND p.account_id = o.account_id
                 AND p.account_version = o.account_version - 1
               LIMIT 1
          ) stored ON true
    )
    SELECT * INTO bad FROM checked c
     WHERE c.no_account
        OR c.account_currency <> c.currency
        OR c.previous IS NULL
        OR c.created_at < c.previous_at
        OR c.balance_after <> c.previous + c.amount * c.normal_sign
        OR (NOT c.allow_negative AND c.balance_after < 0)
     ORDER BY c.posting_id
     LIMIT 1;
    IF FOUND THEN
        IF bad.no_account THEN
            RAISE EXCEPTION 'posting to unknown account %', bad.account_id
                USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'postings_account_exists';
        ELSIF bad.account_currency <> bad.currency THEN
            RAISE EXCEPTION 'posting currency % differs from account currency %', bad.currency, bad.account_currency
                USING ERRCODE = 'check_violation', CONSTRAINT = 'postings_currency_matches_account';
        ELSIF bad.previous IS NULL THEN
            RAISE EXCEPTION 'posting version % of account % does not follow a previous posting',
                bad.account_version, bad.account_id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'postings_running_balance';
        ELSIF bad.created_at < bad.previous_at THEN
            -- Point-in-time balances read the last posting at or before an instant: an account's
            -- postings must never be recorded out of time order.
            RAISE EXCEPTION 'posting of account % recorded at % before its previous posting (%)',
                bad.account_id, bad.created_at, bad.previous_at
                USING ERRCODE = 'check_violation', CONSTRAINT = 'postings_recorded_in_order';
        ELSIF bad.balance_after <> bad.previous + bad.amount * bad.normal_sign THEN
            RAISE EXCEPTION 'running balance % <> % + % * %', bad.balance_after, bad.previous, bad.amount,
                bad.normal_sign
                USING ERRCODE = 'check_violation', CONSTRAINT = 'postings_running_balance';
        ELSE
            RAISE EXCEPTION 'account % may not go negative', bad.account_id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'postings_balance_non_negative';
        END IF;
    END IF;

    INSERT INTO ledger_pending_checks AS c (txid, t_platform, t_entry, t_currency, t_total, t_count,
                                            p_platform, p_account, p_version, p_balance)
    SELECT pg_current_xact_id(), t.*, p.*
      FROM (SELECT array_agg(platform_id), array_agg(entry_id), array_agg(currency), array_agg(total), array_agg(n)
              FROM (SELECT platform_id, entry_id, currency, sum(amount) AS total, count(*) AS n
                      FROM inserted GROUP BY platform_id, entry_id, currency) s) t,
           (SELECT array_agg(platform_id), array_agg(account_id), array_agg(account_version), array_agg(balance_after)
              FROM (SELECT DISTINCT ON (platform_id, account_id) platform_id, account_id, account_version, balance_after
                      FROM inserted ORDER BY platform_id, account_id, account_version DESC) s) p
    ON CONFLICT (txid) DO UPDATE
       SET t_platform = c.t_platform || EXCLUDED.t_platform, t_entry = c.t_entry || EXCLUDED.t_entry,
           t_currency = c.t_currency || EXCLUDED.t_currency, t_total = c.t_total || EXCLUDED.t_total,
           t_count = c.t_count || EXCLUDED.t_count,
           p_platform = c.p_platform || EXCLUDED.p_platform, p_account = c.p_account || EXCLUDED.p_account,
           p_version = c.p_version || EXCLUDED.p_version, p_balance = c.p_balance || EXCLUDED.p_balance;
    RETURN NULL;
END;
$$;
CREATE TRIGGER postings_checked AFTER INSERT ON postings
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION ledger_postings_inserted();

CREATE FUNCTION ledger_entries_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing text;
BEGIN
    IF NOT EXISTS (SELECT FROM inserted) THEN
        RETURN NULL;
    END IF;
    SELECT n.platform_id INTO missing
      FROM (SELECT DISTINCT platform_id FROM inserted) n
      LEFT JOIN LATERAL (
          SELECT true AS found FROM platforms p WHERE p.platform_id = n.platform_id LIMIT 1 FOR KEY SHARE
      ) p ON true
     WHERE p.found IS NULL
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry of unknown platform %', missing
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'journal_entries_platform_id_fkey';
    END IF;
    INSERT INTO ledger_pending_checks AS c (txid, e_platform, e_entry)
    SELECT pg_current_xact_id(), array_agg(platform_id), array_agg(entry_id) FROM inserted
    ON CONFLICT (txid) DO UPDATE
       SET e_platform = c.e_platform || EXCLUDED.e_platform, e_entry = c.e_entry || EXCLUDED.e_entry;
    RETURN NULL;
END;
$$;
CREATE TRIGGER journal_entries_checked AFTER INSERT ON journal_entries
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_inserted();

CREATE FUNCTION ledger_accounts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM updated) THEN
        RETURN NULL;
    END IF;
    INSERT INTO ledger_pending_checks AS c (txid, u_platform, u_account, u_version, u_balance)
    SELECT pg_current_xact_id(), array_agg(platform_id), array_agg(account_id), array_agg(version), array_agg(balance)
      FROM updated
    ON CONFLICT (txid) DO UPDATE
       SET u_platform = c.u_platform || EXCLUDED.u_platform, u_account = c.u_account || EXCLUDED.u_account,
           u_version = c.u_version || EXCLUDED.u_version, u_balance = c.u_balance || EXCLUDED.u_balance;
    RETURN NULL;
END;
$$;
CREATE TRIGGER accounts_checked AFTER UPDATE ON accounts
    REFERENCING NEW TABLE AS updated FOR EACH STATEMENT EXECUTE FUNCTION ledger_accounts_updated();

-- Once per transaction, at commit --------------------------------------------------------------

CREATE FUNCTION ledger_check_pending() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pending ledger_pending_checks;
    bad record;
BEGIN
    DELETE FROM ledger_pending_checks WHERE txid = NEW.txid RETURNING * INTO pending;
    IF NOT FOUND THEN
        RETURN NULL;  -- checked already (SET CONSTRAINTS ... IMMEDIATE)
    END IF;

    -- Entries: those created in this transaction from the sums recorded as their postings were
    -- written (all of an entry's postings are written in its own transaction or later ones);
    -- entries of earlier transactions that got postings now are re-summed from the table.
    WITH created AS (
        SELECT DISTINCT platform_id, entry_id
          FROM unnest(pending.e_platform, pending.e_entry) AS e(platform_id, entry_id)
    ), totals AS (
        SELECT * FROM unnest(pending.t_platform, pending.t_entry, pending.t_currency, pending.t_total, pending.t_count)
               AS t(platform_id, entry_id, currency, total, postings)
    ), posted_to AS (
        SELECT DISTINCT platform_id, entry_id FROM totals
    ), older AS (
        SELECT platform_id, entry_id FROM posted_to EXCEPT SELECT platform_id, entry_id FROM created
    ), per_currency AS (
        SELECT t.platform_id, t.entry_id, t.currency, sum(t.total) AS total, sum(t.postings) AS postings
          FROM totals t
          JOIN created c ON c.platform_id = t.platform_id AND c.entry_id = t.entry_id
         GROUP BY t.platform_id, t.entry_id, t.currency
        UNION ALL
        SELECT o.platform_id, o.entry_id, s.currency, s.total, s.postings
          FROM older o
          JOIN LATERAL (
              SELECT p.currency, sum(p.amount) AS total, count(*) AS postings FROM postings p
               WHERE p.platform_id = o.platform_id AND p.entry_id = o.entry_id GROUP BY p.currency
          ) s ON true
    ), per_entry AS (
        SELECT e.platform_id, e.entry_id, coalesce(sum(x.postings), 0) AS postings,
               count(*) FILTER (WHERE x.total <> 0) AS unbalanced, count(x.currency) AS currencies
          FROM (SELECT * FROM created UNION SELECT * FROM older) e
          LEFT JOIN per_currency x ON x.platform_id = e.platform_id AND x.entry_id = e.entry_id
         GROUP BY e.platform_id, e.entry_id
    )
    SELECT pe.*, j.multi_currency INTO bad
      FROM per_entry pe
      LEFT JOIN LATERAL (
          SELECT j.multi_currency FROM journal_entries j
           WHERE pe.currencies > 1 AND j.platform_id = pe.platform_id AND j.entry_id = pe.entry_id LIMIT 1
      ) j ON true
     WHERE pe.postings < 2 OR pe.unbalanced > 0 OR (pe.currencies > 1 AND NOT j.multi_currency)
     ORDER BY pe.entry_id
     LIMIT 1;
    IF FOUND THEN
        IF bad.postings < 2 THEN
            RAISE EXCEPTION 'journal entry % has % postings (at least 2 needed)', bad.entry_id, bad.postings
                USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_entries_has_postings';
        ELSIF bad.unbalanced > 0 THEN
            RAISE EXCEPTION 'journal entry % does not balance', bad.entry_id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_entries_balanced';
        ELSE
            RAISE EXCEPTION 'journal entry % mixes currencies', bad.entry_id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_entries_single_currency';
        END IF;
    END IF;

    -- Accounts: the stored balance and version are those of the account's last posting. Posted
    -- and updated here: compare what was recorded; posted only: read the stored row; updated
    -- only: read the last posting.
    WITH posted AS (
        SELECT DISTINCT ON (platform_id, account_id) platform_id, account_id, version, balance
          FROM unnest(pending.p_platform, pending.p_account, pending.p_version, pending.p_balance)
               AS p(platform_id, account_id, version, balance)
         ORDER BY platform_id, account_id, version DESC
    ), updated AS (
        SELECT DISTINCT ON (platform_id, account_id) platform_id, account_id, version, balance
          FROM unnest(pending.u_platform, pending.u_account, pending.u_version, pending.u_balance)
               WITH ORDINALITY AS u(platform_id, account_id, version, balance, ord)
         ORDER BY platform_id, account_id, ord DESC
    ), compared AS (
        SELECT coalesce(p.platform_id, u.platform_id) AS platform_id,
               coalesce(p.account_id, u.account_id) AS account_id,
               coalesce(u.balance, stored.balance) AS stored_balance,
               coalesce(u.version, stored.version) AS stored_version,
               CASE WHEN p.account_id IS NOT NULL THEN p.balance ELSE coalesce(last.balance_after, 0) END
                   AS last_balance,
               CASE WHEN p.account_id IS NOT NULL THEN p.version ELSE coalesce(last.account_version, 0) END
                   AS last_version
          FROM posted p
          FULL JOIN updated u ON u.platform_id = p.platform_id AND u.account_id = p.account_id
          LEFT JOIN LATERAL (
              SELECT a.balance, a.version FROM accounts a
               WHERE u.account_id IS NULL AND a.platform_id = p.platform_id AND a.account_id = p.account_id
               LIMIT 1
          ) stored ON true
          LEFT JOIN LATERAL (
              SELECT l.balance_after, l.account_version FROM postings l
               WHERE p.account_id IS NULL AND l.platform_id = u.platform_id AND l.account_id = u.account_id
               ORDER BY l.account_version DESC LIMIT 1
          ) last ON true
    )
    SELECT * INTO bad FROM compared
     WHERE stored_balance IS DISTINCT FROM last_balance OR stored_version IS DISTINCT FROM last_version
     ORDER BY account_id
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'account % balance/version (%/%) disagree with its last posting (%/%)',
            bad.account_id, bad.stored_balance, bad.stored_version, bad.last_balance, bad.last_version
            USING ERRCODE = 'check_violation', CONSTRAINT = 'accounts_balance_matches_postings';
    END IF;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER ledger_pending_checked AFTER INSERT ON ledger_pending_checks
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_pending();

-- What the foreign keys guaranteed besides the checks on insert ---------------------------------

CREATE FUNCTION ledger_guard_account_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM postings WHERE platform_id = OLD.platform_id AND account_id = OLD.account_id) THEN
        RAISE EXCEPTION 'account % has postings and cannot be deleted', OLD.account_id
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'postings_account_exists';
    END IF;
    RETURN OLD;
END;
$$;
CREATE TRIGGER accounts_delete_guarded BEFORE DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_guard_account_delete();

CREATE FUNCTION ledger_reject_account_rekey() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'account % keeps its platform and id', OLD.account_id
        USING ERRCODE = 'restrict_violation', CONSTRAINT = 'accounts_key_fixed';
END;
$$;
CREATE TRIGGER accounts_key_fixed BEFORE UPDATE OF platform_id, account_id ON accounts
    FOR EACH ROW
    WHEN (OLD.platform_id IS DISTINCT FROM NEW.platform_id OR OLD.account_id IS DISTINCT FROM NEW.account_id)
    EXECUTE FUNCTION ledger_reject_account_rekey();

CREATE FUNCTION ledger_reject_accounts_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'accounts cannot be truncated: the append-only postings stand on them'
        USING ERRCODE = 'restrict_violation', CONSTRAINT = 'postings_append_only';
END;
$$;
CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_accounts_truncate();
