"""The ledger's error tree. Each class carries a stable machine-readable ``code``.

LedgerError
├── InvalidEntry            invalid_entry        (built entry breaks a rule; ``problems`` lists all)
├── UnknownAccount          unknown_account
├── AccountExists           account_exists       (same code, different kind/currency/flags)
├── InsufficientFunds       insufficient_funds   (a non-negative account would go negative)
├── Unauthorized            unauthorized         (missing, malformed, unknown or revoked API key)
├── PlatformExists          platform_exists
├── InvalidPlatformId       invalid_request
├── IdempotencyConflict     idempotency_conflict (same key, different content)
├── IdempotencyInProgress   idempotency_in_progress (the first request with the key is still running)
├── IdempotencyKeyRequired  idempotency_key_required (a money-moving request sent without a key)
├── EntryNotFound           entry_not_found
├── NotSealedYet            not_sealed_yet       (no block seals it yet: the sealer runs every second)
├── StoreUnavailable        database_unavailable (driver/connection failure, retry later: 503)
├── InvariantViolated       ledger_invariant_violated (the database's last line of defence fired: a bug)
├── SecretsKeyMissing       secrets_key_missing  (no key to seal DOKU secrets with: configuration)
├── SecretUnreadable        secret_unreadable    (a sealed secret does not open with the keys given)
└── MarketplaceError        (sellers, orders, refunds, settlement, payouts)
    ├── UnknownSeller            unknown_seller
    ├── SellerExists             seller_exists
    ├── ReservedSellerId         reserved_seller_id
    ├── SellerNotFound           seller_not_found
    ├── OrderExists              order_exists
    ├── OrderNotFound            order_not_found
    ├── OrderNotCaptured         order_not_captured
    ├── AmountMismatch           amount_mismatch
    ├── RefundExceedsCaptured    refund_exceeds_captured
    ├── RefundNotFound           refund_not_found
    ├── RefundNotPending         refund_not_pending
    ├── RefundNotInFlight        refund_not_in_flight (only a deposit refund DOKU has not paid can be confirmed)
    ├── UnknownLineItem          unknown_line_item    (a refund names no item of the order, or names one twice)
    ├── LineItemQuantityExceeded line_item_quantity_exceeded
    ├── DepositRefundOutOfRange  deposit_refund_out_of_range (DOKU's Refund Service limits)
    ├── DepositInsufficient      deposit_insufficient (the refund deposit does not cover the refund)
    ├── PayoutExceedsAvailable   payout_exceeds_available
    ├── PayoutNotFound           payout_not_found
    ├── PayoutNotPending         payout_not_pending
    ├── SettlementReportInvalid  settlement_report_invalid
    ├── SettlementReportNotFound not_found
    ├── ExceptionNotFound        not_found            (no such reconciliation exception)
    ├── ExceptionActionInvalid   exception_action_invalid (the action does not fit this exception)
    ├── GatewayRulesBroken       invalid_request      (the order breaks DOKU's request rules)
    ├── GatewayNotConfigured     gateway_not_configured
    ├── ClientIdTaken            client_id_taken
    ├── InvalidInvoiceNumber     invalid_invoice_number (could not be addressed in a URL later)
    ├── InvalidBaseUrl           invalid_base_url     (DOKU's base URL: https, or http to loopback in sandbox mode)
    ├── InvalidRefundPath        invalid_refund_path
    └── (events, webhooks, API keys)
        ├── UnknownEventType         unknown_event_type
        ├── EventNotFound            event_not_found
        ├── InvalidCursor            invalid_request
        ├── WebhookUrlInvalid        invalid_webhook_url
        ├── WebhookEndpointNotFound  webhook_endpoint_not_found
        ├── TooManyWebhookEndpoints  too_many_webhook_endpoints
        ├── ApiKeyNotFound           api_key_not_found
        └── LastApiKey               last_api_key      (revoking it would lock the platform out)
"""

from __future__ import annotations

from collections.abc import Sequence


class LedgerError(Exception):
    code = "ledger_error"

    def __init__(self, detail: str = "", **context: object) -> None:
        super().__init__(detail or self.code)
        self.detail = detail or self.code
        self.context = context


class InvalidEntry(LedgerError):
    code = "invalid_entry"

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{code}: {detail}" for code, detail in problems))
        self.problems = tuple(problems)


class UnknownAccount(LedgerError):
    code = "unknown_account"


class AccountExists(LedgerError):
    code = "account_exists"


class InsufficientFunds(LedgerError):
    code = "insufficient_funds"


class IdempotencyConflict(LedgerError):
    code = "idempotency_conflict"


class IdempotencyInProgress(LedgerError):
    code = "idempotency_in_progress"


class IdempotencyKeyRequired(LedgerError):
    code = "idempotency_key_required"


class NotSealedYet(LedgerError):
    code = "not_sealed_yet"


class EntryNotFound(LedgerError):
    code = "entry_not_found"


class StoreUnavailable(LedgerError):
    code = "database_unavailable"


class InvariantViolated(LedgerError):
    code = "ledger_invariant_violated"


class MarketplaceError(LedgerError):
    code = "marketplace_error"


class UnknownSeller(MarketplaceError):
    code = "unknown_seller"


class SellerExists(MarketplaceError):
    code = "seller_exists"


class ReservedSellerId(MarketplaceError):
    code = "reserved_seller_id"


class SellerNotFound(MarketplaceError):
    code = "seller_not_found"


class OrderExists(MarketplaceError):
    code = "order_exists"


class OrderNotFound(MarketplaceError):
    code = "order_not_found"


class OrderNotCaptured(MarketplaceError):
    code = "order_not_captured"


class AmountMismatch(MarketplaceError):
    code = "amount_mismatch"


class RefundExceedsCaptured(MarketplaceError):
    code = "refund_exceeds_captured"


class RefundNotFound(MarketplaceError):
    code = "refund_not_found"


class RefundNotPending(MarketplaceError):
    code = "refund_not_pending"


class RefundNotInFlight(MarketplaceError):
    code = "refund_not_in_flight"


class UnknownLineItem(MarketplaceError):
    code = "unknown_line_item"


class LineItemQuantityExceeded(MarketplaceError):
    code = "line_item_quantity_exceeded"


class DepositRefundOutOfRange(MarketplaceError):
    code = "deposit_refund_out_of_range"


class DepositInsufficient(MarketplaceError):
    code = "deposit_insufficient"


class ExceptionActionInvalid(MarketplaceError):
    code = "exception_action_invalid"


class PayoutExceedsAvailable(MarketplaceError):
    code = "payout_exceeds_available"


class PayoutNotFound(MarketplaceError):
    code = "payout_not_found"


class PayoutNotPending(MarketplaceError):
    code = "payout_not_pending"


class SettlementReportInvalid(MarketplaceError):
    code = "settlement_report_invalid"


class SettlementReportNotFound(MarketplaceError):
    code = "not_found"


class Unauthorized(LedgerError):
    code = "unauthorized"


class PlatformExists(LedgerError):
    code = "platform_exists"


class InvalidPlatformId(LedgerError):
    code = "invalid_request"


class ExceptionNotFound(MarketplaceError):
    code = "not_found"


class GatewayRulesBroken(MarketplaceError):
    """The order breaks a rule of the gateway's (DOKU's) request format; ``problems`` lists them."""

    code = "invalid_request"


class GatewayNotConfigured(MarketplaceError):
    code = "gateway_not_configured"


class ClientIdTaken(MarketplaceError):
    code = "client_id_taken"


class InvalidInvoiceNumber(MarketplaceError):
    code = "invalid_invoice_number"


class InvalidBaseUrl(MarketplaceError):
    code = "invalid_base_url"


class InvalidRefundPath(MarketplaceError):
    code = "invalid_refund_path"


class SecretsKeyMissing(LedgerError):
    code = "secrets_key_missing"


class SecretUnreadable(LedgerError):
    code = "secret_unreadable"


class UnknownEventType(MarketplaceError):
    code = "unknown_event_type"


class EventNotFound(MarketplaceError):
    code = "event_not_found"


class WebhookUrlInvalid(MarketplaceError):
    code = "invalid_webhook_url"


class WebhookEndpointNotFound(MarketplaceError):
    code = "webhook_endpoint_not_found"


class TooManyWebhookEndpoints(MarketplaceError):
    code = "too_many_webhook_endpoints"


class ApiKeyNotFound(MarketplaceError):
    code = "api_key_not_found"


class LastApiKey(MarketplaceError):
    code = "last_api_key"


class InvalidCursor(MarketplaceError):
    code = "invalid_request"
