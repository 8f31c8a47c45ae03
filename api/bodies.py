"""Request bodies, read once and strictly: one ``msgspec`` decoder per body type, built on first use.

Litestar converts bodies leniently ("50000" or 50000.0 become 50000); a money API takes integers as
integers and refuses fields it does not know. ``Strict[T]`` is the handler's DTO: the body is
decoded straight into ``T`` by that type's decoder, and the OpenAPI document still shows ``T``.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec
from litestar.dto import DTOConfig, MsgspecDTO
from litestar.typing import FieldDefinition

from api.problems import ApiError

T = TypeVar("T", bound=msgspec.Struct)
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def decoder_for(type_: Any) -> msgspec.json.Decoder[Any]:
    found = _decoders.get(type_)
    if found is None:
        found = _decoders[type_] = msgspec.json.Decoder(type_)
    return found


def decode_strict(body: bytes, type_: Any) -> Any:
    try:
        return decoder_for(type_).decode(body)
    except msgspec.ValidationError as exc:
        raise ApiError("invalid_request", str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise ApiError("malformed_json", str(exc)) from exc


class Strict(MsgspecDTO[T], Generic[T]):
    config = DTOConfig(forbid_unknown_fields=True)

    def decode_bytes(self, value: bytes) -> Any:
        return decode_strict(value, self.model_type)

    @classmethod
    def create_openapi_schema(cls, field_definition: FieldDefinition, handler_id: str, schema_creator: Any) -> Any:
        # The body is the wire type itself (no transfer model in between): document exactly that.
        return schema_creator.for_field_definition(
            FieldDefinition.from_annotation(cls.model_type, kwarg_definition=field_definition.kwarg_definition)
        )
