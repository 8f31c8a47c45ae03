-- Every new invoice number must be addressable as one URL path segment (GET /v1/orders/{invoice},
-- its refunds and resends, DOKU's status check /orders/v1/status/{invoice}): the API refuses the
-- rest at creation (invalid_invoice_number, ledger/orders.py INVOICE_NUMBER) and the table refuses
-- it too. On insert only: orders created before this rule keep their numbers and their updates.
CREATE FUNCTION orders_invoice_number_addressable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.invoice_number !~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' THEN
        RAISE EXCEPTION 'invoice number % cannot be addressed in a URL', quote_literal(NEW.invoice_number)
            USING ERRCODE = 'check_violation', CONSTRAINT = 'orders_invoice_number_addressable';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER orders_invoice_number_addressable BEFORE INSERT ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_invoice_number_addressable();
