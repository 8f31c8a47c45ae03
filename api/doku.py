"""The DOKU adapter: the ``PaymentGateway`` port spoken as DOKU's signed HTTP (``jenius``).

Rules: one ``JeniusClient`` per platform, rebuilt when its configuration changes; jenius errors
become the port's outcomes here (``Refused`` for DOKU's no, ``Unreachable`` for no answer) and
never travel further; every call is counted in the metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
import msgspec

from api.metrics import METRICS
from api.settings import Settings
from jenius import errors as jerrors
from jenius import messages as jmsg
from jenius.client import JeniusClient, JeniusConfig
from ledger import split
from ledger.orders import Order, OrderDraft
from ledger.refunds import Refund
from ledger.service.gateway import Delivered, Outcome, PaymentStatus, Refused, Unreachable
from ledger.store.gateways import Gateway

log = logging.getLogger("splitledger.doku")


def _outcome(exc: jerrors.JeniusError) -> Refused | Unreachable:
    if isinstance(exc, jerrors.Rejected):
        return Refused(code=exc.code, detail=str(exc), gateway_code=exc.doku_code)
    return Unreachable(code=exc.code, detail=str(exc))


class DokuGateway:
    """``ledger.service.gateway.PaymentGateway`` over DOKU's Jenius API."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.transport = transport
        self._clients: dict[str, tuple[Gateway, JeniusClient]] = {}

    def config_for(self, gateway: Gateway) -> JeniusConfig:
        return JeniusConfig(
            client_id=gateway.client_id,
            secret_key=gateway.secret_key.reveal(),
            base_url=gateway.base_url or self.settings.doku_base_url,
            refund_path=gateway.refund_path or self.settings.doku_refund_path,
            timeout_s=self.settings.doku_timeout_s,
            reject_bad_response_signature=self.settings.doku_reject_bad_response_signature,
        )

    async def client(self, gateway: Gateway) -> JeniusClient:
        cached = self._clients.get(gateway.platform_id)
        if cached is not None and cached[0] == gateway:
            return cached[1]
        client = JeniusClient(self.config_for(gateway), transport=self.transport)
        await client.__aenter__()
        self._clients[gateway.platform_id] = (gateway, client)
        if cached is not None:
            await cached[1].__aexit__(None, None, None)
        return client

    def base_urls(self) -> set[str]:
        """The configured DOKU base URL and those of the clients built so far."""
        return {self.settings.doku_base_url} | {client.config.base_url for _, client in self._clients.values()}

    async def aclose(self) -> None:
        for _, client in self._clients.values():
            await client.__aexit__(None, None, None)
        self._clients.clear()

    # -- the port ---------------------------------------------------------------------------

    def payment_request(
        self,
        gateway: Gateway,
        draft: OrderDraft,
        allocation: split.Allocation,
        bank_ids: Mapping[str, str],
        platform_id: str,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        settlement: tuple[jmsg.SettlementShare, ...] = ()
        if gateway.send_split_instruction and gateway.platform_settlement_id:
            instruction = split.build_settlement_instruction(allocation, bank_ids, gateway.platform_settlement_id)
            settlement = tuple(msgspec.convert(share, jmsg.SettlementShare) for share in instruction)
        customer = draft.customer
        wire = jmsg.build_payment_request(
            invoice_number=draft.invoice_number,
            amount=draft.amount,
            line_items=tuple(jmsg.LineItem(name=i.name, price=i.price, quantity=i.quantity) for i in draft.line_items),
            customer=jmsg.Customer(
                name=customer["name"] or "", email=customer["email"] or "", phone=customer.get("phone")
            ),
            redirect_url=draft.redirect_url,
            cash_tag=draft.cash_tag,
            settlement=settlement,
            report=(jmsg.ReportColumn(key="splitledger_platform", value=platform_id),),
        )
        problems = [msgspec.structs.asdict(p) for p in jmsg.payment_request_problems(wire)]
        return msgspec.to_builtins(wire), problems

    async def request_payment(self, gateway: Gateway, order: Order) -> Outcome:
        client = await self.client(gateway)
        wire = msgspec.convert(order.request["doku_request"], jmsg.PaymentRequest)
        try:
            await client.request_payment(wire, request_id=order.doku_request_id)
        except jerrors.JeniusError as exc:
            METRICS.count("payment_requests", exc.code)
            if not isinstance(exc, jerrors.Rejected):
                log.warning(
                    "payment request not delivered", extra={"invoice_number": order.invoice_number, "code": exc.code}
                )
            return _outcome(exc)
        METRICS.count("payment_requests", "delivered")
        return Delivered()

    async def refund(self, gateway: Gateway, refund: Refund) -> Outcome:
        client = await self.client(gateway)
        try:
            await client.refund(
                invoice_number=refund.invoice_number,
                amount=refund.amount,
                reason=refund.reason,
                request_id=refund.doku_request_id or refund.refund_id,
            )
        except jerrors.JeniusError as exc:
            METRICS.count("refunds", exc.code)
            if not isinstance(exc, jerrors.Rejected):
                log.warning(
                    "refund not confirmed by DOKU; left requested",
                    extra={"refund_id": refund.refund_id, "code": exc.code},
                )
            return _outcome(exc)
        METRICS.count("refunds", "succeeded")
        return Delivered()

    async def check_status(self, gateway: Gateway, invoice_number: str) -> PaymentStatus | Unreachable:
        client = await self.client(gateway)
        try:
            answer = await client.check_status(invoice_number)
        except jerrors.JeniusError as exc:
            METRICS.count("status_checks", exc.code)
            return Unreachable(code=exc.code, detail=str(exc))
        METRICS.count("status_checks", answer.transaction.status.lower())
        return PaymentStatus(
            invoice_number=invoice_number,
            amount=int(answer.order.amount),
            status=answer.transaction.status,
            date=answer.transaction.date,
        )
