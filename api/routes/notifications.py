"""The endpoint DOKU calls. Its path is a setting: it must equal the Notification URL registered at
DOKU, because DOKU signs that path."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.datastructures import State

from api.notifications import NotificationAck, receive_notification
from api.problems import problem


def notification_handler(path: str) -> Any:
    @post(
        path,
        tags=["doku"],
        summary="DOKU HTTP notification (signed by DOKU)",
        status_code=200,
        operation_id="receiveDokuNotification",
        opt={"body_media_types": None},  # DOKU's signed bytes, whatever it calls them
    )
    async def doku_notification(request: Request[Any, Any, Any], state: State) -> Response[Any]:
        outcome, error = await receive_notification(state.services, dict(request.headers), await request.body())
        if error is not None:
            return problem(request, error)
        return Response(NotificationAck(status="ok", outcome=outcome), status_code=200)

    return doku_notification
